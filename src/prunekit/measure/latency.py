"""Wall-clock latency of a forward pass, as a median and 10th/90th percentiles.

The model runs in eval mode under ``torch.inference_mode``; each submodule's train/eval flag is
restored afterwards. On CUDA the device is synchronised around every timed call so that a time is
the whole pass, not the launch. Dense kernels do not skip zeros, so masking alone does not change
latency; physical removal (surgery) does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError
from prunekit.measure.inputs import ExampleInputs, call_model, forward


@dataclass(frozen=True)
class Latency:
    """Forward-pass times in milliseconds over ``repeats`` timed calls."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int


def _check_counts(warmup: int, repeats: int, threads: int | None) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"latency warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"latency repeats must be an integer >= 1, got {repeats!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"latency threads must be an integer >= 1 or None, got {threads!r}")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op CPU threads for the block (process-wide), then restore."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synchronizer(model: nn.Module) -> Callable[[], None]:
    on_cuda = any(p.is_cuda for p in model.parameters())
    return torch.cuda.synchronize if on_cuda else (lambda: None)


def measure_latency(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    warmup: int = 5,
    repeats: int = 20,
    threads: int | None = None,
) -> Latency:
    """Time ``repeats`` forward passes on ``example_inputs`` after ``warmup`` untimed ones.

    ``threads`` sets PyTorch's CPU thread count for the measurement (``None`` keeps the current
    setting). The first warmup call (there is always at least one) is checked: inputs that make
    the model fail raise a :class:`~prunekit.errors.DataError` naming the failing module.
    """
    _check_counts(warmup, repeats, threads)
    sync = _synchronizer(model)
    times_ms: list[float] = []
    with eval_mode(model), torch.inference_mode(), torch_threads(threads):
        call_model(model, example_inputs, purpose="measuring latency")
        for _ in range(warmup - 1):
            forward(model, example_inputs)
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            forward(model, example_inputs)
            sync()
            times_ms.append((time.perf_counter() - start) * 1e3)
    p10, median, p90 = np.percentile(times_ms, [10, 50, 90])
    return Latency(float(median), float(p10), float(p90), repeats)
