"""Writing an ONNX file: the ``torch.export``-based (dynamo) exporter first, the TorchScript
exporter if it fails; an operator neither can express is named in a one-line error.

The dynamo exporter translates the graph of :func:`torch.export.export` (opset 18+ and ONNX
functions via onnxscript); the TorchScript exporter traces the model and covers older opsets and
some models ``torch.export`` cannot capture. Which one wrote the file is recorded in the report.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.export.report import ExportError
from prunekit.export.runtimes import require
from prunekit.export.tensors import (
    as_call,
    batch_size,
    flat_outputs,
    input_tensors,
    to_numpy,
    with_batch,
)
from prunekit.measure import ExampleInputs

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NO_FUNCTION = re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)'")
_NODE = re.compile(r"Error when translating node %(\w+)")
_TS_OPERATOR = re.compile(r"Exporting the operator '([^']+)' to ONNX opset version (\d+)")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints and deprecation warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the block: the TorchScript exporter's C++ side
    prints the whole IR graph there when it fails."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def dynamic_shapes(inputs: ExampleInputs) -> Any:
    """``torch.export`` dynamic shapes with dimension 0 of every input tensor dynamic."""
    batch = torch.export.Dim.DYNAMIC
    args, kwargs = as_call(inputs)

    def spec(value: Any) -> Any:
        return {0: batch} if isinstance(value, torch.Tensor) and value.dim() >= 1 else None

    if kwargs:
        return {name: spec(value) for name, value in kwargs.items()}
    return tuple(spec(value) for value in args)


def capture(model: nn.Module, inputs: ExampleInputs, dynamic_batch: bool) -> Any:
    """``torch.export.export`` of ``model`` on ``inputs`` (non-strict), batch dynamic if asked.

    ``torch.export`` specialises a size-1 dimension, so a batch-1 example is traced at batch 2
    when the batch is to be dynamic."""
    if dynamic_batch and batch_size(inputs) == 1:
        inputs = with_batch(inputs, 2)
    args, kwargs = as_call(inputs)
    shapes = dynamic_shapes(inputs) if dynamic_batch else None
    with _quiet():
        return torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=shapes, strict=False)


def _dynamo(program: Any, path: Path, opset: int | None) -> None:
    with _quiet():
        torch.onnx.export(
            program, (), str(path), dynamo=True, opset_version=opset, external_data=False,
            verbose=False,
        )  # fmt: skip


def _torchscript(
    model: nn.Module, inputs: ExampleInputs, path: Path, dynamic_batch: bool, opset: int | None
) -> None:
    args, kwargs = as_call(inputs)
    with torch.no_grad():
        n_outputs = len(flat_outputs(model(*args, **kwargs)))
    in_names = [f"input_{i}" for i in range(len(input_tensors(inputs)))]
    out_names = [f"output_{i}" for i in range(n_outputs)]
    axes = {name: {0: "batch"} for name in (*in_names, *out_names)} if dynamic_batch else None
    with _quiet(), _native_stdout_silenced():
        torch.onnx.export(
            model, args, str(path), kwargs=kwargs or None, dynamo=False, opset_version=opset,
            input_names=in_names, output_names=out_names, dynamic_axes=axes,
        )  # fmt: skip


def write_onnx(
    model: nn.Module,
    inputs: ExampleInputs,
    path: Path,
    *,
    dynamic_batch: bool,
    opset: int | None,
) -> str:
    """Export ``model`` (in eval mode) to the ONNX file ``path``; returns the exporter that
    worked, ``"dynamo"`` or ``"torchscript"``."""
    require("onnx", "exporting to ONNX")
    require("onnxscript", "exporting to ONNX with the dynamo exporter")
    program = None
    try:
        program = capture(model, inputs, dynamic_batch)
        _dynamo(program, path, opset)
        return "dynamo"
    except Exception as dynamo_error:
        first = dynamo_error
    try:
        _torchscript(model, inputs, path, dynamic_batch, opset)
        return "torchscript"
    except Exception as ts_error:
        raise ExportError(unsupported_message(model, program, first, ts_error)) from first


def unsupported_message(
    model: nn.Module, program: Any, dynamo_error: BaseException, ts_error: BaseException
) -> str:
    """One line: the operator neither exporter could express and the module that calls it, or
    the first line of each exporter's error."""
    text = _ANSI.sub("", str(dynamo_error))
    op_match = _NO_FUNCTION.search(text) or _TS_OPERATOR.search(str(ts_error))
    name = type(model).__name__
    if op_match is None:
        return (
            f"neither ONNX exporter can export {name}: dynamo: {_summary(dynamo_error)}; "
            f"TorchScript: {_summary(ts_error)}"
        )
    op = op_match.group(1)
    node = _NODE.search(text)
    module = _module_of(program, op, node.group(1) if node else None)
    where = f" called in module {module}" if module else ""
    return (
        f"operator {op}{where} has no ONNX translation in either exporter (dynamo, "
        "TorchScript); replace it or compute it outside the exported model"
    )


def _summary(error: BaseException) -> str:
    """The most specific line of an exporter's error."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(error)).splitlines() if ln.strip()]
    causes = [ln for ln in lines if ln.startswith("<class ")]
    line = causes[0] if causes else (lines[0] if lines else type(error).__name__)
    return re.sub(r"^<class '[\w.]*?(\w+)'>", r"\1", line)[:300]


def _module_of(program: Any, op: str, node_name: str | None) -> str | None:
    """``'head.0' (Dist)``: the innermost module whose forward calls ``op`` in the captured
    program (also looked for after the core ATen decompositions, as the exporter runs them)."""
    if program is None:
        return None
    op = op.removeprefix("aten::").removeprefix("aten.")
    graphs = [program.graph]
    with contextlib.suppress(Exception), _quiet():
        graphs.append(program.run_decompositions().graph)
    for graph in reversed(graphs):
        for node in graph.nodes:
            target = str(node.target).removeprefix("aten.")
            if node.name == node_name or target.split(".")[0] == op:
                stack = node.meta.get("nn_module_stack") or {}
                if stack:
                    path, kind = list(stack.values())[-1]
                    short = str(kind).rsplit(".", 1)[-1]
                    return f"{path!r} ({short})" if path else f"the model's own forward ({short})"
    return None


def run_onnx(session: Any, inputs: ExampleInputs) -> list[np.ndarray]:
    """Outputs of an onnxruntime session on ``inputs`` (tensors fed in order)."""
    feed = feed_dict(session, inputs)
    return list(session.run(None, feed))


def feed_dict(session: Any, inputs: ExampleInputs) -> dict[str, np.ndarray]:
    """The session's inputs by name from the example's tensors, in order."""
    arrays = to_numpy(input_tensors(inputs))
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(arrays):
        raise ExportError(
            f"the ONNX model takes {len(names)} input(s) ({', '.join(names)}), the example "
            f"inputs hold {len(arrays)} tensor(s)"
        )
    return dict(zip(names, arrays, strict=True))
