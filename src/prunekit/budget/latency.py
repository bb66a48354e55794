"""Latency as a budget: per-layer tables measured in the serving runtime, and the width step at
which that runtime is fastest.

MACs are a poor proxy for time: a runtime pads channels to its vector width (onnxruntime's
NCHWc kernels work in blocks of 8 or 16 channels), so 57 channels cost what 64 do, and a pruned
network of arbitrary widths can be *slower* than the dense one. Following NetAdapt (Yang et al.
2018, "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile Applications") and AMC
(He et al. 2018), the latency of each layer is measured, not modelled:

* :func:`measure_latency_table` times every prunable convolution and Linear layer alone, with its
  real input size, at a few output widths (all inputs kept) and a few input widths (all outputs
  kept), in the runtime itself (:class:`RuntimeTimer`: PyTorch eager or onnxruntime, one thread,
  interleaved medians). Layers of the same shape are timed once.
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

import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.budget.target import LATENCY_RUNTIMES
from prunekit.core.groups import Group, Selection
from prunekit.core.modes import eval_mode
from prunekit.core.views import AxisView, IndexView
from prunekit.errors import ConfigError, closest
from prunekit.measure.inputs import ExampleInputs, call_model, forward
from prunekit.measure.latency import torch_threads
from prunekit.measure.params import measured_layers

STEPS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
STATISTICS: tuple[str, ...] = ("median", "min")
CLOCKS: tuple[str, ...] = ("cpu", "wall")

Call = Callable[[], object]


class RuntimeTimer:
    """Times modules in a runtime with ``threads`` intra-op threads: :meth:`time` runs them in
    alternation (one call each per round, order rotated), so that load on a shared machine hits
    every model alike, and returns each one's ``statistic`` (median or minimum) in ms.

    ``clock="cpu"`` (the default with one thread) counts the CPU time of the calling thread,
    where both runtimes compute with one thread; time spent waiting for a CPU is not counted.
    On an oversubscribed machine wall-clock times are decided by the scheduler (MobileNet v2 in
    onnxruntime, three copies in 15 interleaved rounds at a load average of 12 on 2 cores: wall
    medians 41.8-46.5 ms, CPU medians 13.8-15.0 ms; a 2 ms model's wall medians ranged 1.9-10.3
    ms). ``clock="wall"`` is the latency a user sees on a quiet machine, and the only clock for
    more than one thread."""

    def __init__(
        self,
        runtime: str = "onnxruntime",
        *,
        threads: int = 1,
        warmup: int = 3,
        repeats: int = 15,
        statistic: str = "median",
        clock: str | None = None,
    ) -> None:
        if runtime not in LATENCY_RUNTIMES:
            raise ConfigError(
                f"latency runtime {runtime!r} is not one of {', '.join(LATENCY_RUNTIMES)}"
                f"{closest(runtime, LATENCY_RUNTIMES)}"
            )
        for name, value, low in (("threads", threads, 1), ("warmup", warmup, 0),
                                 ("repeats", repeats, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"latency timer {name} must be an integer >= {low}, got {value!r}"
                )
        if statistic not in STATISTICS:
            raise ConfigError(
                f"latency statistic {statistic!r} is not one of {', '.join(STATISTICS)}"
            )
        clock = clock or ("cpu" if threads == 1 else "wall")
        if clock not in CLOCKS or (clock == "cpu" and threads != 1):
            raise ConfigError(
                f"latency clock {clock!r} must be 'wall', or 'cpu' with threads=1 (got {threads})"
            )
        self.runtime, self.threads, self.warmup, self.repeats = runtime, threads, warmup, repeats
        self.statistic, self.clock = statistic, clock

    def with_repeats(self, repeats: int) -> RuntimeTimer:
        """The same timer with ``repeats`` timed rounds."""
        return RuntimeTimer(self.runtime, threads=self.threads, warmup=self.warmup,
                            repeats=repeats, statistic=self.statistic,
                            clock=self.clock)  # fmt: skip

    def time(
        self, models: Mapping[str, nn.Module], example_inputs: ExampleInputs
    ) -> dict[str, float]:
        """Median forward time in ms of each module on ``example_inputs``."""
        with ExitStack() as stack:
            stack.enter_context(torch_threads(self.threads))
            calls = {
                n: stack.enter_context(self._runner(m, example_inputs)) for n, m in models.items()
            }
            return interleave(calls, self.warmup, self.repeats, self.statistic, self.clock)

    @contextmanager
    def _runner(self, model: nn.Module, inputs: ExampleInputs) -> Iterator[Call]:
        with eval_mode(model), torch.inference_mode():
            call_model(model, inputs, purpose=f"timing in {self.runtime}")
            if self.runtime == "torch":
                yield lambda: forward(model, inputs)
                return
            with tempfile.TemporaryDirectory(prefix="prunekit-latency-") as folder:
                session, feed = _ort_session(model, inputs, Path(folder) / "m.onnx", self.threads)
                yield lambda: session.run(None, feed)


def interleave(
    calls: Mapping[str, Call],
    warmup: int,
    repeats: int,
    statistic: str = "median",
    clock: str = "wall",
) -> dict[str, float]:
    """Median (or minimum) ms of each call over ``repeats`` rounds after ``warmup`` untimed
    ones."""
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
    reduce = np.min if statistic == "min" else np.median
    return {name: float(reduce(v)) * 1e3 for name, v in times.items()}


def _tensors(inputs: ExampleInputs) -> tuple[Tensor, ...]:
    values = (inputs,) if isinstance(inputs, Tensor) else inputs
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, Tensor) for v in values):
        raise ConfigError(
            "onnxruntime latency needs the example inputs as a tensor or a tuple of tensors, "
            f"got {type(inputs).__name__}"
        )
    return tuple(values)


def _ort_session(
    model: nn.Module, inputs: ExampleInputs, path: Path, threads: int
) -> tuple[Any, dict[str, np.ndarray]]:
    """An onnxruntime session on ``model`` exported by the TorchScript exporter (a timer needs
    the graph, not a checked export: seconds per model rather than tens)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "latency in onnxruntime needs onnxruntime: pip install prunekit[onnx]"
        ) from None
    args = _tensors(inputs)
    names = [f"input{i}" for i in range(len(args))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, input_names=names)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {n: a.detach().cpu().numpy() for n, a in zip(names, args, strict=True)}
    return session, feed


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


def _positions(group: Group, member: int) -> Tensor:
    view = group.members[member].view
    if isinstance(view, AxisView):
        return torch.full((view.n_units,), float(view.repeat), dtype=torch.float64)
    if isinstance(view, IndexView):
        return torch.tensor([float(len(ix)) for ix in view.index], dtype=torch.float64)
    raise ConfigError(
        f"a latency target needs structural groups (channels, neurons, heads); group "
        f"{group.name!r} has a {type(view).__name__}"
    )


class LatencyModel:
    """Predicted latency of a structural selection from a :class:`LatencyTable` (no surgery).

    Each tabulated layer's kept input and output widths are the dense widths less the positions
    the selection removes from dimension 1 and 0 of its weight (for a depthwise convolution,
    the input width is the output width)."""

    def __init__(self, table: LatencyTable, groups: Sequence[Group], model: nn.Module) -> None:
        self.table = table
        self.group_names = tuple(g.name for g in groups)
        self.layers = tuple(table.layers)
        shapes = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
        self.full = torch.tensor(
            [[float(shapes[w][1]) if len(shapes[w]) > 1 else 1.0, float(shapes[w][0])]
             for w in self.layers], dtype=torch.float64,
        ).reshape(-1, 2)  # fmt: skip
        slot = {(w, d): 2 * i + (1 - d) for i, w in enumerate(self.layers) for d in (0, 1)}
        index, where, count, offset = [], [], [], 0
        for group in groups:
            for m, member in enumerate(group.members):
                key = (member.tensor, int(getattr(member.view, "dim", 0)))
                if key in slot:
                    index.append(torch.arange(offset, offset + group.n_units))
                    where.append(torch.full((group.n_units,), slot[key], dtype=torch.long))
                    count.append(_positions(group, m))
            offset += group.n_units
        self.unit_index = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
        self.unit_slot = torch.cat(where) if where else torch.zeros(0, dtype=torch.long)
        self.unit_count = torch.cat(count) if count else torch.zeros(0, dtype=torch.float64)
        self.dense = table.model_ms

    def widths(self, selection: Selection) -> Tensor:
        """``[layers, 2]``: kept (input, output) width of each tabulated layer."""
        removed = torch.cat([~selection[n].to(torch.bool).cpu() for n in self.group_names])
        cut = torch.zeros(2 * len(self.layers), dtype=torch.float64)
        cut.index_add_(0, self.unit_slot, self.unit_count * removed[self.unit_index])
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


def _time_layer(shape: LayerShape, c_in: int, c_out: int, timer: RuntimeTimer) -> float:
    layer, x = shape.build(c_in, c_out)
    return timer.time({"layer": layer}, x)["layer"]


def _macs(shape: LayerShape) -> float:
    spatial = float(np.prod(shape.input_shape[2:])) if shape.kind == "conv2d" else 1.0
    per_out = shape.c_in / (shape.c_out if shape.depthwise else shape.groups)
    return shape.c_out * per_out * float(np.prod(shape.kernel or (1,))) * spatial
