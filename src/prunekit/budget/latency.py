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
  rounding step (1, 2, 4, ...) whose widths give the most channels per millisecond.

:func:`~prunekit.budget.select_to_target` uses the table to search and then confirms by timing
the real pruned model against the dense one.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    "LayerTimes",
    "RuntimeTimer",
    "fastest_step",
    "layer_shapes",
    "measure_latency_table",
]


def fastest_step(
    model: nn.Module,
    example_inputs: ExampleInputs,
    timer: RuntimeTimer,
    *,
    steps: Sequence[int] = STEPS,
    window: int = 32,
    tie: float = 0.02,
) -> int:
    """The width step at which ``timer``'s runtime does the most work per millisecond.

    The heaviest layer shape of each kind (dense convolution, depthwise convolution, Linear) is
    timed at every output width of a ``window`` just above half its width. Per step, the output
    channels per millisecond at its multiples in the window are averaged and divided by the
    layer's best; the step with the highest mean over the layers wins, or the smallest step
    within ``tie`` (relative) of it: a finer step leaves the selection more freedom."""
    if window < max(steps):
        raise ConfigError(f"fastest_step window {window} must span the largest step {max(steps)}")
    kinds: dict[tuple[str, bool], LayerShape] = {}
    for shape in sorted(set(layer_shapes(model, example_inputs).values()), key=_macs):
        kinds[(shape.kind, shape.depthwise)] = shape  # the heaviest of each kind comes last
    score = dict.fromkeys(steps, 0.0)
    probed = 0
    for shape in kinds.values():
        low = max(1, shape.c_out // 2 - shape.c_out // 2 % max(steps))
        widths = [w for w in range(low, low + window + 1) if w <= shape.c_out]
        if len(widths) <= max(steps):
            continue
        layers = {w: shape.build(shape.c_in, w) for w in widths}
        times: dict[int, float] = {}
        for w, (layer, x) in layers.items():
            times[w] = timer.time({"layer": layer}, x)["layer"]
        rate = {w: w / t for w, t in times.items()}
        top = max(rate.values())
        for s in steps:
            score[s] += float(np.mean([rate[w] for w in widths if w % s == 0])) / top
        probed += 1
    if not probed:
        return 1
    best = max(score.values())
    return min(s for s in steps if score[s] >= best * (1 - tie))


def _macs(shape: LayerShape) -> float:
    spatial = float(np.prod(shape.input_shape[2:])) if shape.kind == "conv2d" else 1.0
    per_out = shape.c_in / (shape.c_out if shape.depthwise else shape.groups)
    return shape.c_out * per_out * float(np.prod(shape.kernel or (1,))) * spatial
