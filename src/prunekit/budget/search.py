"""Find the selection that meets a MACs, params or latency target.

The search turns one knob, the sparsity of the :class:`~prunekit.core.selection.SelectionConfig`
(global: the fraction of the pool's units removed; layer scope: the fraction removed from each
group), and bisects it: the cost of a candidate is computed analytically by
:class:`~prunekit.budget.cost.CostModel` (no surgery, no forward pass), so a search over a
large model costs a few dozen selections. Per-group floors, overrides, ``round_to`` and score
normalisation of the config are respected as they are. The chosen selection is then confirmed
once by real surgery and counting; when the real ratio misses (MACs the cost model holds fixed,
e.g. attention products, also shrink), the analytic goal is corrected by the observed ratio and
the search repeated (at most :data:`CONFIRM_ROUNDS` times).

A latency target is searched the same way on a :class:`~prunekit.budget.latency.LatencyModel`
(per-layer times measured in the runtime) and confirmed by timing the real pruned model against
the dense one, interleaved, in that runtime (:func:`_select_to_latency`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from torch import nn

from prunekit.budget.cost import CostModel, build_cost_model
from prunekit.budget.latency import LatencyModel, RuntimeTimer, layer_shapes, measure_latency_table
from prunekit.budget.refine import refine_past_big_units
from prunekit.budget.target import Metric, Target, parse_target
from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.selection import SelectionConfig, max_global_removal, select
from prunekit.errors import ConfigError
from prunekit.measure import count_macs, count_params, dense_size_bytes
from prunekit.surgery.apply import apply_surgery

CONFIRM_ROUNDS = 3
"""Surgery-and-count confirmations at most (each after a corrected search)."""
_MAX_STEPS = 60
LATENCY_ROUNDS = 5
"""Timed confirmations of a latency target at most."""
LATENCY_TOLERANCE = 0.03
"""The least relative tolerance of a latency target: timing on a CPU is noisier than counting."""


class _Costs(Protocol):
    def ratio(self, selection: Selection) -> float: ...


class _Knob:
    """The selection and analytic cost ratio at each sparsity of the config's knob."""

    def __init__(
        self, scores: Scores, groups: Sequence[Group], config: SelectionConfig, costs: _Costs
    ) -> None:
        self.scores, self.groups, self.config, self.costs = scores, groups, config, costs
        if config.scope == "layer":
            self.top, self.resolution = 1.0 - 1e-9, 1e-7
            return
        pool = [g for g in groups if g.pattern is None and config.override_for(g.layer) is None]
        total = sum(g.n_units for g in pool)
        most = min(max_global_removal(pool, config), total - 1) if total else 0
        self.top = most / total if total else 0.0
        self.resolution = 0.25 / total if total else 1.0

    def at(self, sparsity: float) -> tuple[Selection, float]:
        config = dataclasses.replace(self.config, sparsity=sparsity, threshold=None)
        selection = select(self.scores, self.groups, config)
        return selection, self.costs.ratio(selection)


def _bisect(knob: _Knob, goal: float, band: float) -> tuple[Selection, float]:
    """The selection whose analytic ratio is closest to ``goal``. Ratios fall as sparsity
    rises; the bracket closes to adjacent selections, and when the unit between them is too
    big a step the search goes on past it (:func:`refine_past_big_units`)."""
    lo, (sel_lo, r_lo) = 0.0, knob.at(0.0)
    if r_lo <= goal or knob.top <= 0.0:
        return sel_lo, r_lo
    hi, (sel_hi, r_hi) = knob.top, knob.at(knob.top)
    if r_hi >= goal:
        return sel_hi, r_hi
    for _ in range(_MAX_STEPS):
        if hi - lo <= knob.resolution or r_lo - r_hi <= 1e-5 * goal:
            break
        mid = (lo + hi) / 2
        sel, r = knob.at(mid)
        if r > goal:
            lo, sel_lo, r_lo = mid, sel, r
        else:
            hi, sel_hi, r_hi = mid, sel, r
    if min(r_lo - goal, goal - r_hi) > band * goal and isinstance(knob.costs, CostModel):
        sel_lo, r_lo = refine_past_big_units(
            sel_lo, r_lo, goal, band,
            scores=knob.scores, groups=knob.groups, config=knob.config, costs=knob.costs,
        )  # fmt: skip
    return (sel_lo, r_lo) if r_lo - goal < goal - r_hi else (sel_hi, r_hi)


def _measure(model: nn.Module, example_inputs: Any, metric: Metric) -> float:
    if metric == "params":
        return float(count_params(model))
    if metric == "size":
        return float(dense_size_bytes(model))
    return float(count_macs(model, example_inputs).total)


def _real_ratio(
    model: nn.Module,
    example_inputs: Any,
    groups: Sequence[Group],
    selection: Selection,
    metric: Metric,
    dense: float,
) -> float:
    pruned, _ = apply_surgery(model, groups, selection)
    return _measure(pruned, example_inputs, metric) / dense


def _unreachable(target: Target, lowest: float, config: SelectionConfig) -> ConfigError:
    return ConfigError(
        f"target {target} cannot be reached: with min_keep={config.min_keep}, "
        f"min_keep_fraction={config.min_keep_fraction}, the overrides and the excluded layers, "
        f"the lowest reachable {target.metric} ratio is {lowest:.4f}; ask for "
        f"{target.metric}>={lowest:.3f}, lower min_keep_fraction or exclude fewer layers"
    )


def select_to_target(
    model: nn.Module,
    example_inputs: Any,
    groups: Sequence[Group],
    scores: Scores,
    config: SelectionConfig,
    target: Target,
    *,
    tolerance: float = 0.01,
    timer: RuntimeTimer | None = None,
) -> Selection:
    """The selection of ``groups`` whose pruned model keeps ``target.keep`` of the dense
    model's MACs, parameters or latency, within ``tolerance`` (relative) where the units allow.

    ``config`` supplies everything but the amount (its ``sparsity`` and ``threshold`` are
    replaced by the searched sparsity): scope, floors, overrides, ``round_to``, normalisation.
    A target below what the floors and exclusions allow raises :class:`ConfigError` naming
    the lowest reachable ratio. If the confirming surgery cannot run the pruned model, the
    analytic choice is returned with a warning.

    A latency target (``{"latency": 0.5, "runtime": "onnxruntime"}``) is timed by ``timer``
    (default: :class:`~prunekit.budget.latency.RuntimeTimer` in the target's runtime, one thread)
    and met within ``max(tolerance, LATENCY_TOLERANCE)`` where timing allows; a miss is a warning
    naming the measured ratio, and the closest selection measured is returned.
    """
    target = parse_target(target)
    if not groups:
        raise ConfigError(
            f"target {target}: there is no prunable group (every unit is excluded or fixed)"
        )
    if target.metric == "latency":
        timer = timer or RuntimeTimer(target.runtime or "onnxruntime")
        tolerance = max(tolerance, LATENCY_TOLERANCE)
        return _select_to_latency(
            model, example_inputs, groups, scores, config, target, tolerance, timer
        )
    costs = build_cost_model(model, example_inputs, groups, target.metric)
    knob = _Knob(scores, groups, config, costs)
    lowest = knob.at(knob.top)[1]
    if lowest > target.keep * (1 + tolerance):
        raise _unreachable(target, lowest, config)
    selection, analytic = _bisect(knob, target.keep, tolerance / 2)
    if target.keep >= 1.0:
        return selection
    dense = _measure(model, example_inputs, target.metric) if target.metric == "params" else None
    best: tuple[float, Selection] | None = None
    for _ in range(CONFIRM_ROUNDS):
        try:
            real = _real_ratio(
                model, example_inputs, groups, selection, target.metric, dense or costs.dense
            )
        except Exception as err:  # confirmation is a check; the analytic choice still stands
            warnings.warn(
                f"target {target}: the pruned model could not be counted to confirm the "
                f"analytic {target.metric} ratio {analytic:.4f} ({type(err).__name__}: {err})",
                stacklevel=2,
            )
            return selection if best is None else best[1]
        error = abs(real / target.keep - 1)
        if best is None or error < best[0]:
            best = (error, selection)
        if error <= tolerance:
            break
        selection, analytic = _bisect(knob, target.keep * analytic / real, tolerance / 2)
    assert best is not None
    if best[0] > COARSE_ERROR and config.scope == "layer":
        return _finer(model, example_inputs, groups, scores, config, target, tolerance, best)
    return best[1]


COARSE_ERROR = 0.015
"""Above this relative error a per-layer selection is too coarse for the target (one sparsity for
every group moves in steps of whole big units, e.g. RegNet's 128-channel grouped convolutions)."""


def _finer(
    model: nn.Module,
    example_inputs: Any,
    groups: Sequence[Group],
    scores: Scores,
    config: SelectionConfig,
    target: Target,
    tolerance: float,
    best: tuple[float, Selection],
) -> Selection:
    """The closer of ``best`` (per layer) and a global ranking of mean-normalised scores, which
    moves one unit at a time and kept the accuracy of per-layer selection in the selection
    benchmark (docs/benchmarks.md, "Choosing the default selection")."""
    finer = dataclasses.replace(config, scope="global", normalize="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = select_to_target(
            model, example_inputs, groups, scores, finer, target, tolerance=tolerance
        )
    try:
        dense = _measure(model, example_inputs, target.metric)
        real = _real_ratio(model, example_inputs, groups, selection, target.metric, dense)
    except Exception:  # the finer choice cannot be confirmed: keep the confirmed one
        return best[1]
    if abs(real / target.keep - 1) < best[0]:
        warnings.warn(
            f"target {target}: one sparsity per layer lands {100 * best[0]:.1f}% off (units too "
            "coarse); used a global ranking of mean-normalised scores instead",
            stacklevel=3,
        )
        return selection
    return best[1]


def _select_to_latency(
    model: nn.Module,
    example_inputs: Any,
    groups: Sequence[Group],
    scores: Scores,
    config: SelectionConfig,
    target: Target,
    tolerance: float,
    timer: RuntimeTimer,
) -> Selection:
    """Bisect on the measured per-layer table, time the real pruned model against the dense one,
    and move the table's goal to where the measured ratios say the target lies."""
    pruned_weights = {m.tensor for g in groups for m in g.members}
    only = [w for w in layer_shapes(model, example_inputs) if w in pruned_weights]
    table = measure_latency_table(model, example_inputs, timer, only=only)
    knob = _Knob(scores, groups, config, LatencyModel(table, groups, model))
    confirm = timer.with_repeats(2 * timer.repeats + 1)  # one model pair: afford more rounds
    goal = target.keep
    seen: list[tuple[float, float]] = []
    best: tuple[float, float, Selection] | None = None
    for _ in range(LATENCY_ROUNDS):
        selection, analytic = _bisect(knob, goal, tolerance / 4)
        pruned, _ = apply_surgery(model, groups, selection)
        times = confirm.time({"dense": model, "pruned": pruned}, example_inputs)
        real = times["pruned"] / times["dense"]
        seen.append((analytic, real))
        error = abs(real / target.keep - 1)
        if best is None or error < best[0]:
            best = (error, real, selection)
        if error <= tolerance or target.keep >= 1.0:
            break
        goal = _next_goal(seen, target.keep)
    assert best is not None
    if best[0] > tolerance:
        warnings.warn(
            f"target {target}: the closest pruned model measured {best[1]:.3f} of the dense "
            f"latency in {timer.runtime} ({len(seen)} timed tries; timing noise or units too "
            "coarse)",
            stacklevel=3,
        )
    return best[2]


def _next_goal(seen: Sequence[tuple[float, float]], keep: float) -> float:
    """The table ratio expected to measure ``keep``: interpolated between the closest measured
    tries on either side of it, else the last try scaled by how far it measured off."""
    below = [p for p in seen if p[1] <= keep]
    above = [p for p in seen if p[1] > keep]
    if below and above:
        (a_lo, r_lo), (a_hi, r_hi) = max(below, key=lambda p: p[1]), min(above, key=lambda p: p[1])
        if r_hi > r_lo:
            return a_lo + (a_hi - a_lo) * (keep - r_lo) / (r_hi - r_lo)
    analytic, real = seen[-1]
    return min(1.0, max(1e-4, analytic * keep / real))
