"""Latency as a budget: per-layer tables measured in the serving runtime, and the width step at
which that runtime is fastest.

MACs are a poor proxy for time: a runtime pads channels to its vector width (onnxruntime's
NCHWc kernels work in blocks of 8 or 16 channels), so 57 channels cost what 64 do, and a pruned
network of arbitrary widths can be *slower* than the dense one. Following NetAdapt (Yang et al.
2018, "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile Applications") and AMC
(He et al. 2018), the latency of each layer is measured, not modelled:

* :func:`measure_latency_table` times every prunable convolution and Linear layer alone, with its
  real input size, at a few output widths (all inputs kept) and a few input widths (all outputs
  kept), in the runtime itself (:class:`RuntimeTimer`: PyTorch eager, onnxruntime or OpenVINO,
  one thread, interleaved medians). Layers of the same shape are timed once
  (:mod:`prunekit.budget.latency_table`).
* :class:`LatencyModel` predicts a selection's latency as ``rest + sum_l T_l(c_in, c_out)`` with
  ``T_l(c_in, c_out) = T_l^out(c_out) * T_l^in(c_in) / T_l`` (separable, exact when the time is a
  product of two padded widths, as in a blocked GEMM) and linear interpolation between the
  widths measured; ``rest`` is what the layers leave of the dense model's measured time.
* :func:`fastest_step` times the heaviest layers at every width over a window and returns the
  rounding step (1, 2, 4, ...) whose widths give the most channels per millisecond, a larger
  step only where it is faster beyond the timing noise (it must win repeated passes).

:func:`~prunekit.budget.select_to_target` uses the table to search and then confirms by timing
the real pruned model against the dense one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from torch import nn

from prunekit.budget.latency_table import (
    LatencyModel,
    LatencyTable,
    LayerShape,
    LayerTimes,
    layer_shapes,
    measure_latency_table,
)
from prunekit.budget.latency_timer import CLOCKS, STATISTICS, RuntimeTimer
from prunekit.budget.step_evidence import StepEvidence
from prunekit.errors import ConfigError
from prunekit.measure.inputs import ExampleInputs

STEPS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)

__all__ = [
    "CLOCKS",
    "STATISTICS",
    "STEPS",
    "LatencyModel",
    "LatencyTable",
    "LayerShape",
    "LayerTimer",
    "LayerTimes",
    "RuntimeTimer",
    "fastest_step",
    "layer_shapes",
    "measure_latency_table",
]


class LayerTimer(Protocol):
    """What :func:`fastest_step` times layers with (:class:`RuntimeTimer` is one): each module's
    forward time in ms on ``example_inputs``."""

    def time(
        self, models: Mapping[str, nn.Module], example_inputs: ExampleInputs
    ) -> dict[str, float]: ...


def fastest_step(
    model: nn.Module,
    example_inputs: ExampleInputs,
    timer: LayerTimer,
    *,
    steps: Sequence[int] = STEPS,
    window: int = 32,
    tie: float = 0.02,
    passes: int = 2,
    doubt: float = 0.1,
    z: float = 2.0,
) -> int:
    """The width step at which ``timer``'s runtime does the most work per millisecond.

    The heaviest layer shape of each kind (dense convolution, depthwise convolution, Linear) is
    timed at every output width of a ``window`` just above half its width. Per step, the output
    channels per millisecond at its multiples in the window are averaged, relative to the
    layer's best, and summed over the layers: the step's score.

    A finer step leaves the selection more freedom, so the smallest step wins unless a larger
    one is faster beyond the noise: the answer is the smallest step that no other step beats
    (:meth:`~prunekit.budget.step_evidence.StepEvidence.beats`: faster by more than ``tie`` in
    every pass, and on average by ``tie`` plus ``z`` standard errors). One pass decides when
    its answer is the smallest step, or leads every smaller step by more than ``doubt`` (a
    padding effect far above timing noise, e.g. a runtime's 8-channel blocks on convolutions);
    otherwise the layers are timed again, ``passes`` times in all, and the passes' spread
    gives the noise (on Linear layers, where the steps differ by less than the noise of a
    loaded machine, a single pass had chosen 16 in one run and 4 in another).
    """
    if window < max(steps):
        raise ConfigError(f"fastest_step window {window} must span the largest step {max(steps)}")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ConfigError(f"fastest_step passes must be an integer >= 1, got {passes!r}")
    probes = _probes(model, example_inputs, steps, window)
    if not probes:
        return 1
    runs = [_time_pass(probes, timer)]
    evidence = StepEvidence([widths for _, widths in probes], runs)
    chosen = evidence.unbeaten(steps, tie, z)
    if chosen == min(steps) or evidence.margin(chosen, steps) > doubt or passes == 1:
        return chosen
    while len(runs) < passes:
        runs.append(_time_pass(probes, timer))
    return StepEvidence([widths for _, widths in probes], runs).unbeaten(steps, tie, z)


def _probes(
    model: nn.Module, example_inputs: ExampleInputs, steps: Sequence[int], window: int
) -> list[tuple[LayerShape, list[int]]]:
    """The heaviest layer shape of each kind, with the output widths it is timed at."""
    kinds: dict[tuple[str, bool], LayerShape] = {}
    for shape in sorted(set(layer_shapes(model, example_inputs).values()), key=_macs):
        kinds[(shape.kind, shape.depthwise)] = shape  # the heaviest of each kind comes last
    probes = []
    for shape in kinds.values():
        low = max(1, shape.c_out // 2 - shape.c_out // 2 % max(steps))
        widths = [w for w in range(low, low + window + 1) if w <= shape.c_out]
        if len(widths) > max(steps):
            probes.append((shape, widths))
    return probes


def _time_pass(
    probes: Sequence[tuple[LayerShape, list[int]]], timer: LayerTimer
) -> list[list[float]]:
    """One timing pass: per probed layer, output channels per ms at each of its widths."""
    rates = []
    for shape, widths in probes:
        layer_rates = []
        for w in widths:
            layer, x = shape.build(shape.c_in, w)
            layer_rates.append(w / timer.time({"layer": layer}, x)["layer"])
        rates.append(layer_rates)
    return rates


def _macs(shape: LayerShape) -> float:
    spatial = float(np.prod(shape.input_shape[2:])) if shape.kind == "conv2d" else 1.0
    per_out = shape.c_in / (shape.c_out if shape.depthwise else shape.groups)
    return shape.c_out * per_out * float(np.prod(shape.kernel or (1,))) * spatial
