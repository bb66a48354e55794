"""The runtimes a model runs in: PyTorch eager, onnxruntime and OpenVINO on the CPU.

One home for what every caller needs: the runtime names (:data:`RUNTIMES`), the optional
imports (:func:`require`: a missing runtime is a :class:`MissingRuntimeError` naming the extra
that installs it), sessions on an ONNX file or in-memory graph (:func:`ort_session`,
:func:`openvino_compiled`), a module as a no-argument call in a runtime
(:func:`runtime_call`), and interleaved timing of several calls (:func:`interleaved_times`).

Sessions are pinned to ``threads`` inference threads and run in the calling thread, so the
calling thread's CPU time (``clock="cpu"``) is the time a single-threaded runtime computed.
"""

from __future__ import annotations

import importlib
import io
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError, closest
from prunekit.measure.inputs import ExampleInputs, call_model, forward
from prunekit.measure.latency import torch_threads

RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino", "torch")
"""Every runtime prunekit times or runs a model in; the first is the default of a latency
target."""

CLOCKS: tuple[str, ...] = ("cpu", "wall")
"""``"cpu"``: the calling thread's CPU time; ``"wall"``: elapsed time."""

Call = Callable[[], object]

_EXTRA_OF = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
}


class MissingRuntimeError(ConfigError):
    """An optional runtime or exporter is not installed; the message names the extra."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a :class:`MissingRuntimeError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = _EXTRA_OF.get(module.split(".")[0], module)
        raise MissingRuntimeError(
            f"{purpose} needs {module!r}, which is not installed: "
            f"pip install prunekit[{extra}] (with -c constraints.txt in this repository)"
        ) from None


def check_runtime(runtime: object, where: str = "runtime") -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`, else a :class:`ConfigError` from ``where``."""
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"{where} {runtime!r} is not one of {', '.join(RUNTIMES)}"
            f"{closest(str(runtime), RUNTIMES)}"
        )
    return str(runtime)


def runtime_name(module: str) -> str:
    """``"onnxruntime 1.18.0"``: a runtime and its version, for reports."""
    version = str(getattr(importlib.import_module(module), "__version__", "?"))
    version = version.split("-")[0]  # OpenVINO appends its build
    return f"{module} {version}"


def ort_session(model: str | Path | bytes, threads: int | None = 1) -> Any:
    """An onnxruntime CPU session on an ONNX file or serialised graph with ``threads`` intra-op
    threads (``None``: the runtime's default) and one inter-op thread."""
    ort = require("onnxruntime", "running an ONNX model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def openvino_compiled(model: str | Path | bytes, threads: int | None = 1) -> Any:
    """An OpenVINO CPU model compiled in float32 from a file (``.xml`` IR or ``.onnx``) or a
    serialised ONNX graph, with ``threads`` inference threads (``None``: the runtime's
    default)."""
    ov = require("openvino", "running an OpenVINO model")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    source = core.read_model(model) if isinstance(model, bytes) else str(model)
    return core.compile_model(source, "CPU", config)


def input_tuple(inputs: ExampleInputs, runtime: str = "onnxruntime") -> tuple[Tensor, ...]:
    """The example inputs as a tuple of tensors (what an ONNX graph takes), else a
    :class:`ConfigError`."""
    values = (inputs,) if isinstance(inputs, Tensor) else inputs
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, Tensor) for v in values):
        raise ConfigError(
            f"latency in {runtime} needs the example inputs as a tensor or a tuple of tensors, "
            f"got {type(inputs).__name__}"
        )
    return tuple(values)


def onnx_graph(model: nn.Module, args: tuple[Tensor, ...]) -> bytes:
    """``model`` on ``args`` as a serialised ONNX graph from the TorchScript exporter, in
    memory: a timer needs the graph, not a checked export (seconds per model, not tens). The
    inputs are named ``input0``, ``input1``, ... ``nn.MultiheadAttention``'s fused inference
    path (an operator ONNX lacks) is turned off while tracing."""
    buffer = io.BytesIO()
    names = [f"input{i}" for i in range(len(args))]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, buffer, dynamo=False, input_names=names)  # type: ignore[arg-type]
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()


@contextmanager
def runtime_call(
    model: nn.Module, example_inputs: ExampleInputs, runtime: str, threads: int = 1
) -> Iterator[Call]:
    """A no-argument call running one forward pass of ``model`` in ``runtime`` on
    ``threads`` threads, valid inside the block. The model is in eval mode and PyTorch on
    ``threads`` threads inside it (both restored after); onnxruntime and OpenVINO run the
    model's in-memory ONNX graph (:func:`onnx_graph`). The first forward pass is checked: inputs
    that make the model fail raise a :class:`~prunekit.errors.DataError` naming the module."""
    check_runtime(runtime)
    with ExitStack() as stack:
        stack.enter_context(torch_threads(threads))
        stack.enter_context(eval_mode(model))
        stack.enter_context(torch.inference_mode())
        call_model(model, example_inputs, purpose=f"timing in {runtime}")
        if runtime == "torch":
            yield lambda: forward(model, example_inputs)
            return
        args = input_tuple(example_inputs, runtime)
        graph = onnx_graph(model, args)
        arrays = [a.detach().cpu().numpy() for a in args]
        if runtime == "onnxruntime":
            session = ort_session(graph, threads)
            feed = {f"input{i}": a for i, a in enumerate(arrays)}
            yield lambda: session.run(None, feed)
        else:
            compiled = openvino_compiled(graph, threads)
            request = compiled.create_infer_request()
            yield lambda: request.infer(arrays)


def interleaved_times(
    calls: Mapping[str, Call], warmup: int, repeats: int, clock: str = "wall"
) -> dict[str, np.ndarray]:
    """Seconds of each call in each of ``repeats`` rounds, after ``warmup`` untimed rounds.
    One call of each per round, the order rotated, so that a drift in machine load hits every
    call alike. ``clock="cpu"`` counts the calling thread's CPU time."""
    if clock not in CLOCKS:
        raise ConfigError(f"latency clock {clock!r} is not one of {', '.join(CLOCKS)}")
    now = time.thread_time if clock == "cpu" else time.perf_counter
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            start = now()
            calls[name]()
            times[name].append(now() - start)
    return {name: np.asarray(values) for name, values in times.items()}
