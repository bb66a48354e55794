"""OpenVINO IR (``.xml`` + ``.bin``) converted from the PyTorch model, weights kept in float32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from prunekit.export.report import ExportError
from prunekit.export.runtimes import require
from prunekit.export.tensors import as_call, input_tensors, to_numpy
from prunekit.measure import ExampleInputs


def write_ir(model: nn.Module, inputs: ExampleInputs, path: Path, *, dynamic_batch: bool) -> str:
    """Convert ``model`` with ``openvino.convert_model`` and save the IR at ``path`` (``.xml``;
    the weights go to the ``.bin`` beside it)."""
    ov = require("openvino", "exporting to OpenVINO")
    args, kwargs = as_call(inputs)
    example: Any = kwargs if kwargs else (args[0] if len(args) == 1 else args)
    try:
        converted = ov.convert_model(model, example_input=example)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(
            f"OpenVINO cannot convert the model: {type(err).__name__}: {first}"
        ) from err
    if dynamic_batch:
        shapes = {}
        for port in converted.inputs:
            shape = port.get_partial_shape()
            if shape.rank.is_static and len(shape) >= 1:
                shape[0] = ov.Dimension(-1)
            shapes[port] = shape
        converted.reshape(shapes)
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return "openvino.convert_model"


def bin_path(xml: Path) -> Path:
    """The weights file of the IR ``xml``."""
    return xml.with_suffix(".bin")


def run_ir(compiled: Any, inputs: ExampleInputs) -> list[np.ndarray]:
    arrays = to_numpy(input_tensors(inputs))
    result = compiled(arrays)
    return [np.asarray(result[port]) for port in compiled.outputs]
