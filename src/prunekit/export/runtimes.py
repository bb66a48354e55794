"""Optional runtimes, imported only when used: a missing one is an error naming the extra that
installs it."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from prunekit.export.report import ExportError

_EXTRA_OF = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an :class:`ExportError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = _EXTRA_OF.get(module, module)
        raise ExportError(
            f"{purpose} needs {module!r}, which is not installed: "
            f"pip install prunekit[{extra}] (with -c constraints.txt in this repository)"
        ) from None


def runtime_name(module: str) -> str:
    """``"onnxruntime 1.18.0"``: a runtime and its version, for reports."""
    version = str(getattr(importlib.import_module(module), "__version__", "?"))
    version = version.split("-")[0]  # OpenVINO appends its build
    return f"{module} {version}"


def ort_session(path: str | Path, threads: int | None = 1) -> Any:
    """An onnxruntime CPU session on ``path`` with ``threads`` intra-op threads (``None``: the
    runtime's default) and one inter-op thread."""
    ort = require("onnxruntime", "running an ONNX model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_compiled(path: str | Path, threads: int | None = 1) -> Any:
    """An OpenVINO CPU model compiled from ``path`` in float32 with ``threads`` inference
    threads (``None``: the runtime's default)."""
    ov = require("openvino", "running an OpenVINO model")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(str(path), "CPU", config)
