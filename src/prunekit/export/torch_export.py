"""``torch.export`` programs saved as ``.pt2`` (:func:`torch.export.save`) and run back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.export.onnx_export import capture
from prunekit.export.report import ExportError
from prunekit.export.tensors import as_call, flat_outputs, to_numpy
from prunekit.measure import ExampleInputs


def write_program(
    model: nn.Module, inputs: ExampleInputs, path: Path, *, dynamic_batch: bool
) -> str:
    """Capture ``model`` with :func:`torch.export.export` and save it to ``path``."""
    try:
        program = capture(model, inputs, dynamic_batch)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(
            f"torch.export cannot capture the model: {type(err).__name__}: {first}"
        ) from err
    torch.export.save(program, str(path))
    return "torch.export"


def load_program(path: Path) -> nn.Module:
    """The saved program at ``path`` as a callable module."""
    module: Any = torch.export.load(str(path)).module()
    return module


def run_program(module: nn.Module, inputs: ExampleInputs) -> list[np.ndarray]:
    args, kwargs = as_call(inputs)
    with torch.no_grad():
        return to_numpy(flat_outputs(module(*args, **kwargs)))
