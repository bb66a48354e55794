"""Latency in a real runtime: PyTorch, onnxruntime or OpenVINO on CPU, threads pinned, medians.

:func:`runtime_latency` times one model or exported file; :func:`interleaved_latency` times
several in alternation (one call of each per round, order rotated), so that a drift in machine
load hits all of them alike, which matters when comparing a dense and a pruned model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError
from prunekit.export.api import export_model
from prunekit.export.onnx_export import feed_dict
from prunekit.export.tensors import input_tensors, to_numpy, with_batch
from prunekit.export.torch_export import load_program
from prunekit.measure import ExampleInputs, Latency, call_model
from prunekit.measure.inputs import forward
from prunekit.measure.latency import torch_threads
from prunekit.measure.runtimes import (
    RUNTIMES,
    Call,
    check_runtime,
    interleaved_times,
    openvino_compiled,
    ort_session,
)

__all__ = ["RUNTIMES", "interleaved_latency", "runtime_latency", "runtime_runner"]

_EXPORT_FOR = {"onnxruntime": ("onnx", "model.onnx"), "openvino": ("openvino", "model.xml")}


def _check(runtime: str, threads: int, warmup: int, repeats: int) -> None:
    check_runtime(runtime)
    for name, value, low in (
        ("threads", threads, 1),
        ("warmup", warmup, 0),
        ("repeats", repeats, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"runtime latency {name} must be an integer >= {low}, got {value!r}")


@contextmanager
def runtime_runner(
    model_or_path: nn.Module | str | Path,
    example_inputs: ExampleInputs,
    runtime: str = "torch",
    *,
    batch: int | None = None,
    threads: int = 1,
) -> Iterator[Call]:
    """A no-argument call that runs one forward pass in ``runtime``, valid inside the block.

    A module given for onnxruntime or OpenVINO is exported first (checked, to a temporary
    directory); a path is loaded as it is (``.onnx``, ``.xml``, or ``.pt2`` for ``"torch"``).
    ``batch`` resizes the example inputs (see :func:`prunekit.export.tensors.with_batch`).
    """
    _check(runtime, threads, 0, 1)
    inputs = example_inputs if batch is None else with_batch(example_inputs, batch)
    with ExitStack() as stack:
        if runtime == "torch":
            model = model_or_path
            if isinstance(model, nn.Module):
                stack.enter_context(eval_mode(model))
            else:  # a saved program runs as it was captured (eval mode)
                model = load_program(Path(model))
            stack.enter_context(torch.inference_mode())
            stack.enter_context(torch_threads(threads))
            call_model(model, inputs, purpose="measuring runtime latency")
            yield lambda: forward(model, inputs)
            return
        path = model_or_path
        if isinstance(path, nn.Module):
            fmt, name = _EXPORT_FOR[runtime]
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="prunekit-")))
            path = export_model(path, example_inputs, folder / name, format=fmt).path
        if runtime == "onnxruntime":
            session = ort_session(path, threads)
            feed = feed_dict(session, inputs)
            yield lambda: session.run(None, feed)
        else:
            compiled = openvino_compiled(path, threads)
            arrays = to_numpy(input_tensors(inputs))
            yield lambda: compiled(arrays)


def _latency(times_s: np.ndarray) -> Latency:
    p10, median, p90 = np.percentile(times_s * 1e3, [10, 50, 90])
    return Latency(float(median), float(p10), float(p90), len(times_s))


def interleaved_latency(
    calls: Mapping[str, Call], *, warmup: int = 5, repeats: int = 30
) -> dict[str, Latency]:
    """Time every call ``repeats`` times in alternation after ``warmup`` untimed rounds; the
    order within a round rotates so that no call always runs first."""
    _check("torch", 1, warmup, repeats)
    times = interleaved_times(calls, warmup, repeats, clock="wall")
    return {name: _latency(values) for name, values in times.items()}


def runtime_latency(
    model_or_path: nn.Module | str | Path,
    example_inputs: ExampleInputs,
    runtime: str = "torch",
    *,
    batch: int | None = None,
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 30,
) -> Latency:
    """Median (and 10th / 90th percentile) forward time of a model or an exported file in
    ``runtime`` (``"torch"``, ``"onnxruntime"``, ``"openvino"``) with ``threads`` intra-op
    threads, after ``warmup`` untimed calls."""
    _check(runtime, threads, warmup, repeats)
    with runtime_runner(
        model_or_path, example_inputs, runtime, batch=batch, threads=threads
    ) as call:
        return interleaved_latency({"model": call}, warmup=warmup, repeats=repeats)["model"]
