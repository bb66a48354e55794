"""Export a model and check the export against PyTorch in its runtime: :func:`export_model`.

The file is written under a temporary name in the target directory and moved over ``path``
(:func:`os.replace`) only after the parity check passed, so a failing or interrupted export never
replaces a good file.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError, closest
from prunekit.export import onnx_export, openvino_export, torch_export
from prunekit.export.parity import Parity, compare_outputs
from prunekit.export.report import FORMATS, ExportError, ExportReport
from prunekit.export.runtimes import openvino_compiled, ort_session, require, runtime_name
from prunekit.export.tensors import batch_size, flat_outputs, other_batch, with_batch
from prunekit.measure import ExampleInputs, call_model

Runner = Callable[[ExampleInputs], list[np.ndarray]]


@dataclass(frozen=True)
class _Format:
    """How to write one format, open what was written, and which files it spans."""

    write: Callable[[nn.Module, ExampleInputs, Path, bool, int | None], str]
    open: Callable[[Path], tuple[Runner, str]]
    files: Callable[[Path], list[Path]]
    needs: tuple[str, ...]


def _open_onnx(path: Path) -> tuple[Runner, str]:
    session = ort_session(path, threads=None)
    return (lambda x: onnx_export.run_onnx(session, x)), runtime_name("onnxruntime")


def _open_program(path: Path) -> tuple[Runner, str]:
    module = torch_export.load_program(path)
    return (lambda x: torch_export.run_program(module, x)), f"torch {torch.__version__}"


def _open_ir(path: Path) -> tuple[Runner, str]:
    compiled = openvino_compiled(path, threads=None)
    return (lambda x: openvino_export.run_ir(compiled, x)), runtime_name("openvino")


_FORMATS: dict[str, _Format] = {
    "onnx": _Format(
        lambda m, x, p, dyn, opset: onnx_export.write_onnx(m, x, p, dynamic_batch=dyn, opset=opset),
        _open_onnx,
        lambda p: [p],
        ("onnx", "onnxscript", "onnxruntime"),
    ),
    "torch-export": _Format(
        lambda m, x, p, dyn, opset: torch_export.write_program(m, x, p, dynamic_batch=dyn),
        _open_program,
        lambda p: [p],
        (),
    ),
    "openvino": _Format(
        lambda m, x, p, dyn, opset: openvino_export.write_ir(m, x, p, dynamic_batch=dyn),
        _open_ir,
        lambda p: [openvino_export.bin_path(p), p],
        ("openvino",),
    ),
}
assert tuple(_FORMATS) == FORMATS


def export_model(
    model: nn.Module,
    example_inputs: ExampleInputs,
    path: str | Path,
    *,
    format: str = "onnx",
    dynamic_batch: bool = True,
    opset: int | None = None,
    check: bool = True,
    atol: float = 1e-4,
) -> ExportReport:
    """Export ``model`` to ``path`` and check that the export computes what the model computes.

    Args:
        format: ``"onnx"`` (checked in onnxruntime), ``"torch-export"`` (a ``.pt2`` program,
            reloaded and run) or ``"openvino"`` (an IR ``.xml`` + ``.bin``, run by OpenVINO).
        dynamic_batch: make dimension 0 of every input dynamic; the check then also runs a
            second batch size.
        opset: ONNX opset (``None``: the exporter's default).
        check: run the parity check; with ``False`` the file is written unchecked.
        atol: tolerance per output, scaled by ``max(1, max |torch output|)``.

    The model runs in eval mode without gradients (each submodule's flag is restored). A
    difference above tolerance, NaN or infinity raises :class:`ExportError` naming the output
    and the difference, and leaves ``path`` as it was.
    """
    spec = _spec(format, atol)
    for module in spec.needs:
        require(module, f"format {format!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temp = temp.with_name(temp.name + target.suffix)
    start = time.perf_counter()
    try:
        with eval_mode(model), torch.no_grad():
            call_model(model, example_inputs, purpose=f"exporting to {format}")
            exporter = spec.write(model, example_inputs, temp, dynamic_batch, opset)
            parity: Parity | None = None
            runtime: str | None = None
            sizes: tuple[int, ...] = ()
            if check:
                parity, runtime, sizes = _check(
                    model, example_inputs, temp, spec, dynamic_batch, atol
                )
        for source, dest in zip(spec.files(temp), spec.files(target), strict=True):
            os.replace(source, dest)
    except ExportError as err:
        raise ExportError(
            f"{format} export of {type(model).__name__}: {err}; {target} left unchanged"
        ) from err
    finally:
        for leftover in spec.files(temp):
            leftover.unlink(missing_ok=True)
    return ExportReport(
        path=target,
        format=format,
        max_abs_diff=None if parity is None else parity.max_abs_diff,
        max_rel_diff=None if parity is None else parity.max_rel_diff,
        runtime=runtime,
        seconds=time.perf_counter() - start,
        exporter=exporter,
        batch_sizes=sizes,
    )


def _spec(format: str, atol: float) -> _Format:
    if format not in _FORMATS:
        raise ConfigError(
            f"export format {format!r} is not one of {', '.join(FORMATS)}{closest(format, FORMATS)}"
        )
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol > 0:
        raise ConfigError(f"export atol must be a number > 0, got {atol!r}")
    return _FORMATS[format]


def _check(
    model: nn.Module,
    inputs: ExampleInputs,
    path: Path,
    spec: _Format,
    dynamic_batch: bool,
    atol: float,
) -> tuple[Parity, str, tuple[int, ...]]:
    """Run the exported file and PyTorch on the example (and another batch size when dynamic)."""
    run, runtime = spec.open(path)
    first = batch_size(inputs)
    sizes = (first, other_batch(first)) if dynamic_batch else (first,)
    parity = Parity()
    for size in sizes:
        x = inputs if size == first else with_batch(inputs, size)
        reference = flat_outputs(call_model(model, x, purpose=f"exporting at batch {size}"))
        where = f"{runtime} at batch {size}"
        try:
            exported = run(x)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"{where} failed to run the export: {_first_line(err)}") from err
        parity = parity.merge(compare_outputs(reference, exported, atol=atol, where=where))
    return parity, runtime, sizes


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"
