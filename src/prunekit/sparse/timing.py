"""Interleaved timing: several ways to compute the same thing, timed in turns, medians compared.

Timing each candidate in turn, with the order rotated every round, spreads a machine's slow
moments (another process, a frequency change) over all of them instead of penalising whichever
ran during it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

from prunekit.errors import ConfigError
from prunekit.measure.latency import torch_threads as torch_threads


def interleaved_times(
    calls: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 3,
    repeats: int = 15,
    cuda: bool = False,
) -> dict[str, list[float]]:
    """Milliseconds of each call in each of ``repeats`` interleaved rounds (the order rotated
    every round), after ``warmup`` untimed calls of each; ``cuda`` synchronises the device
    around every timed call."""
    if warmup < 0 or repeats < 1:
        raise ConfigError(f"timing needs warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    labels = list(calls)
    for label in labels:
        for _ in range(warmup):
            calls[label]()
    times: dict[str, list[float]] = {label: [] for label in labels}
    for round_ in range(repeats):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            sync()
            start = time.perf_counter()
            calls[label]()
            sync()
            times[label].append((time.perf_counter() - start) * 1e3)
    return times


def interleaved_medians(
    calls: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 3,
    repeats: int = 15,
    cuda: bool = False,
) -> dict[str, float]:
    """The median of each call's :func:`interleaved_times`."""
    times = interleaved_times(calls, warmup=warmup, repeats=repeats, cuda=cuda)
    return {label: statistics.median(values) for label, values in times.items()}


def paired_speedup(baseline: list[float], other: list[float]) -> float:
    """The median over rounds of ``baseline / other`` times of the same round: calls timed side
    by side share the machine's state, so their ratio drifts less than the times do."""
    return statistics.median(b / max(o, 1e-9) for b, o in zip(baseline, other, strict=True))
