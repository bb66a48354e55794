"""Per-layer latency tables measured in the serving runtime, and the latency of a selection
predicted from them (after NetAdapt, Yang et al. 2018, and AMC, He et al. 2018: the latency of
each layer is measured, not modelled).

* :func:`measure_latency_table` times every prunable convolution and Linear layer alone, with its
  real input size, at a few output widths (all inputs kept) and a few input widths (all outputs
  kept), in the runtime itself (:class:`~prunekit.budget.latency_timer.RuntimeTimer`). Layers of
  the same shape are timed once.
* :class:`LatencyModel` predicts a selection's latency as ``rest + sum_l T_l(c_in, c_out)`` with
  ``T_l(c_in, c_out) = T_l^out(c_out) * T_l^in(c_in) / T_l`` (separable, exact when the time is a
  product of two padded widths, as in a blocked GEMM) and linear interpolation between the
  widths measured; ``rest`` is what the layers leave of the dense model's measured time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.budget.latency_timer import RuntimeTimer
from prunekit.budget.units import UnitCuts, member_dim
from prunekit.core.groups import Group, Selection
from prunekit.core.modes import eval_mode
from prunekit.measure.inputs import ExampleInputs, call_model
from prunekit.measure.params import measured_layers


@dataclass(frozen=True)
class LayerShape:
    """What a layer's time depends on: its kind, widths, kernel geometry and input size."""

    kind: str
    c_in: int
    c_out: int
    depthwise: bool
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    input_shape: tuple[int, ...]

    def build(self, c_in: int, c_out: int) -> tuple[nn.Module, Tensor]:
        """The layer alone at widths ``c_in`` x ``c_out`` and an input for it."""
        shape = list(self.input_shape)
        if self.kind == "linear":
            shape[-1] = c_in
            return nn.Linear(c_in, c_out, bias=self.bias), torch.randn(shape)
        if self.depthwise:
            c_in = c_out
        groups = c_out if self.depthwise else math.gcd(self.groups, c_in, c_out)
        shape[1] = c_in
        conv = nn.Conv2d(c_in, c_out, self.kernel, self.stride, self.padding, self.dilation,  # type: ignore[arg-type]
                         groups=groups, bias=self.bias)  # fmt: skip
        return conv, torch.randn(shape)


def _shape_of(module: nn.Module, input_shape: tuple[int, ...]) -> LayerShape | None:
    if isinstance(module, nn.Linear):
        return LayerShape("linear", module.in_features, module.out_features, False, (), (), (),
                          (), 1, module.bias is not None, input_shape)  # fmt: skip
    if isinstance(module, nn.Conv2d) and isinstance(module.padding, tuple):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return LayerShape("conv2d", module.in_channels, module.out_channels, depthwise,
                          tuple(module.kernel_size), tuple(module.stride), tuple(module.padding),
                          tuple(module.dilation), module.groups, module.bias is not None,
                          input_shape)  # fmt: skip
    return None  # other layers stay in the measured rest of the model


def layer_shapes(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, LayerShape]:
    """Weight tensor name -> shape of each prunable Conv2d / Linear the example reaches."""
    seen: dict[str, tuple[int, ...]] = {}
    hooks = []
    layers = {name: (module, rule) for name, module, rule in measured_layers(model)}

    def record(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
            seen.setdefault(name, tuple(args[0].shape))

        return hook

    for name, (module, _) in layers.items():
        hooks.append(module.register_forward_pre_hook(record(name)))
    try:
        with eval_mode(model), torch.inference_mode():
            call_model(model, example_inputs, purpose="recording layer input sizes")
    finally:
        for hook in hooks:
            hook.remove()
    shapes = {}
    for name, (module, rule) in layers.items():
        shape = _shape_of(module, seen[name]) if name in seen else None
        if shape is not None:
            shapes[f"{name}.{rule.weight}" if name else rule.weight] = shape
    return shapes


def _widths(full: int, points: int, step: int) -> list[int]:
    """``points`` widths spread over (0, full], multiples of ``step`` where possible, with full."""
    chosen = {full}
    for i in range(1, points):
        w = max(1, round(full * i / points))
        chosen.add(min(full, max(step, -(-w // step) * step)))
    return sorted(chosen)


@dataclass(frozen=True)
class LayerTimes:
    """One layer's measured times: ``out_ms[i]`` at ``out_widths[i]`` output channels with every
    input kept, ``in_ms[j]`` at ``in_widths[j]`` inputs with every output kept; ``dense_ms``."""

    dense_ms: float
    out_widths: tuple[int, ...]
    out_ms: tuple[float, ...]
    in_widths: tuple[int, ...]
    in_ms: tuple[float, ...]

    def at(self, c_in: float, c_out: float) -> float:
        """Predicted time at ``c_in`` x ``c_out`` (separable, interpolated)."""
        t_out = float(np.interp(c_out, self.out_widths, self.out_ms))
        if len(self.in_widths) < 2:
            return t_out
        t_in = float(np.interp(c_in, self.in_widths, self.in_ms))
        return t_out * t_in / self.dense_ms if self.dense_ms > 0 else t_out


@dataclass(frozen=True)
class LatencyTable:
    """Per weight tensor name, the layer's :class:`LayerTimes`; ``model_ms`` the dense model."""

    runtime: str
    model_ms: float
    layers: Mapping[str, LayerTimes]

    @property
    def rest_ms(self) -> float:
        """Time the tabulated layers do not account for (activations, pooling, overhead)."""
        return max(0.0, self.model_ms - sum(t.dense_ms for t in self.layers.values()))


def measure_latency_table(
    model: nn.Module,
    example_inputs: ExampleInputs,
    timer: RuntimeTimer,
    *,
    points: int = 6,
    step: int = 8,
    only: Sequence[str] | None = None,
) -> LatencyTable:
    """Time every prunable Conv2d / Linear alone at ``points`` output and input widths (multiples
    of ``step``), and the whole dense model; layers of identical shape are timed once. ``only``
    restricts the table to these weight names (e.g. those a group prunes)."""
    shapes = layer_shapes(model, example_inputs)
    if only is not None:
        shapes = {k: v for k, v in shapes.items() if k in set(only)}
    model_ms = timer.time({"model": model}, example_inputs)["model"]
    by_shape: dict[LayerShape, LayerTimes] = {}
    for shape in dict.fromkeys(shapes.values()):
        by_shape[shape] = _time_shape(shape, timer, points, step)
    return LatencyTable(timer.runtime, model_ms, {k: by_shape[s] for k, s in shapes.items()})


def _time_shape(shape: LayerShape, timer: RuntimeTimer, points: int, step: int) -> LayerTimes:
    outs = _widths(shape.c_out, points, step)
    ins = [] if shape.depthwise else _widths(shape.c_in, points, step)
    variants = [(shape.c_in, w) for w in outs] + [(w, shape.c_out) for w in ins if w != shape.c_in]
    times = {}
    for c_in, c_out in variants:
        times[(c_in, c_out)] = _time_layer(shape, c_in, c_out, timer)
    dense = times[(shape.c_in, shape.c_out)]
    return LayerTimes(
        dense_ms=dense,
        out_widths=tuple(outs),
        out_ms=tuple(times[(shape.c_in, w)] for w in outs),
        in_widths=tuple(ins),
        in_ms=tuple(times[(w, shape.c_out)] for w in ins),
    )


class LatencyModel:
    """Predicted latency of a structural selection from a :class:`LatencyTable` (no surgery).

    Each tabulated layer's kept input and output widths are the dense widths less the positions
    the selection removes from dimension 1 and 0 of its weight (for a depthwise convolution,
    the input width is the output width)."""

    def __init__(self, table: LatencyTable, groups: Sequence[Group], model: nn.Module) -> None:
        self.table = table
        self.layers = tuple(table.layers)
        shapes = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
        self.full = torch.tensor(
            [[float(shapes[w][1]) if len(shapes[w]) > 1 else 1.0, float(shapes[w][0])]
             for w in self.layers], dtype=torch.float64,
        ).reshape(-1, 2)  # fmt: skip
        slot = {(w, d): 2 * i + (1 - d) for i, w in enumerate(self.layers) for d in (0, 1)}
        self.units = UnitCuts.build(
            groups, lambda m: slot.get((m.tensor, member_dim(m))), "a latency target"
        )
        self.dense = table.model_ms

    def widths(self, selection: Selection) -> Tensor:
        """``[layers, 2]``: kept (input, output) width of each tabulated layer."""
        cut = self.units.cut(selection, 2 * len(self.layers))
        return self.full - cut.reshape(-1, 2)

    def cost(self, selection: Selection) -> float:
        kept = self.widths(selection).tolist()
        times = self.table.layers
        total = self.table.rest_ms
        for name, (c_in, c_out) in zip(self.layers, kept, strict=True):
            total += times[name].at(c_in if len(times[name].in_widths) > 1 else c_out, c_out)
        return total

    def ratio(self, selection: Selection) -> float:
        return self.cost(selection) / self.dense if self.dense else 1.0


def _time_layer(shape: LayerShape, c_in: int, c_out: int, timer: RuntimeTimer) -> float:
    layer, x = shape.build(c_in, c_out)
    return timer.time({"layer": layer}, x)["layer"]
