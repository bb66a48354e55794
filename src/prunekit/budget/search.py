"""Find the selection that meets a MACs, params or latency target.

The search turns one knob, the sparsity of the :class:`~prunekit.core.selection.SelectionConfig`,
and bisects it (:mod:`prunekit.budget.knob`): the cost of a candidate is computed analytically by
:class:`~prunekit.budget.cost.CostModel` (no surgery, no forward pass), so a search over a
large model costs a few dozen selections. Per-group floors, overrides, ``round_to`` and score
normalisation of the config are respected as they are. The chosen selection is then confirmed
by real surgery, running and counting; when the real ratio misses (MACs the cost model holds
fixed, e.g. attention products, also shrink), the analytic goal is corrected by the observed
ratio and the search repeated (at most :data:`CONFIRM_ROUNDS` times). A confirmed candidate
obeys the refusal rule of verified surgery (:mod:`prunekit.budget.feasible`): an inexact group
whose removal stops the pruned model from running is kept whole and the search runs again
without it, so no candidate that cannot run is ever counted or returned.

A latency target is searched the same way on a :class:`~prunekit.budget.latency.LatencyModel`
(per-layer times measured in the runtime, once) and confirmed by timing the real pruned model
against the dense one, interleaved, in that runtime (:func:`_select_to_latency`)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.budget.cost import build_cost_model
from prunekit.budget.feasible import Feasibility
from prunekit.budget.knob import Knob, bisect_knob
from prunekit.budget.latency import (
    LatencyModel,
    LatencyTable,
    RuntimeTimer,
    layer_shapes,
    measure_latency_table,
)
from prunekit.budget.target import Metric, Target, parse_target
from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.selection import SelectionConfig
from prunekit.errors import ConfigError
from prunekit.measure import count_macs, count_params, dense_size_bytes
from prunekit.surgery.apply import apply_surgery
from prunekit.surgery.verify import UnverifiableGroupError

CONFIRM_ROUNDS = 3
"""Surgery-and-count confirmations at most (each after a corrected search)."""
LATENCY_ROUNDS = 5
"""Timed confirmations of a latency target at most."""
LATENCY_TOLERANCE = 0.03
"""The least relative tolerance of a latency target: timing on a CPU is noisier than counting."""


def _measure(model: nn.Module, example_inputs: Any, metric: Metric) -> float:
    if metric == "params":
        return float(count_params(model))
    if metric == "size":
        return float(dense_size_bytes(model))
    return float(count_macs(model, example_inputs).total)


@dataclass(frozen=True)
class _Problem:
    """What every stage of one target search shares; ``whole`` names the groups kept whole so
    far (:mod:`prunekit.budget.feasible`)."""

    model: nn.Module
    example_inputs: Any
    scores: Scores
    target: Target
    tolerance: float
    feasible: Feasibility
    whole: tuple[str, ...] = ()

    def confirm(self, groups: Sequence[Group], selection: Selection, dense: float) -> float | None:
        """The real ratio of ``selection`` after surgery; ``None`` when the pruned model runs
        but cannot be counted. A pruned model that does not run raises as verification would
        (:meth:`Feasibility.check`)."""
        pruned, _ = apply_surgery(self.model, groups, selection)
        metric = self.target.metric
        if metric != "macs":  # counted without running: run it once all the same
            self.feasible.check(groups, selection, pruned)
            return _measure(pruned, self.example_inputs, metric) / dense
        try:
            return _measure(pruned, self.example_inputs, metric) / dense
        except Exception:
            self.feasible.check(groups, selection, pruned)  # raises unless the counting failed
            return None


def _unreachable(
    target: Target, lowest: float, config: SelectionConfig, whole: Sequence[str] = ()
) -> ConfigError:
    kept = (
        f" (the groups {list(whole)} are kept whole: removing them makes the model fail to run)"
        if whole
        else ""
    )
    return ConfigError(
        f"target {target} cannot be reached: with min_keep={config.min_keep}, "
        f"min_keep_fraction={config.min_keep_fraction}, the overrides and the excluded layers"
        f"{kept}, the lowest reachable {target.metric} ratio is {lowest:.4f}; ask for "
        f"{target.metric}>={lowest:.3f}, lower min_keep_fraction or exclude fewer layers"
    )


class TargetSelection(dict[str, Tensor]):
    """A selection (group name -> keep mask, for every group searched) that also names, in
    ``kept_whole``, the inexact groups the search kept whole because removing them makes the
    pruned model fail to run (in the order they were found)."""

    kept_whole: tuple[str, ...]

    def __init__(self, selection: Selection, kept_whole: Sequence[str] = ()) -> None:
        super().__init__(selection)
        self.kept_whole = tuple(kept_whole)


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
    inexact: Collection[str] | None = None,
) -> TargetSelection:
    """The selection of ``groups`` whose pruned model keeps ``target.keep`` of the dense
    model's MACs, parameters or latency, within ``tolerance`` (relative) where the units allow.

    ``config`` supplies everything but the amount (its ``sparsity`` and ``threshold`` are
    replaced by the searched sparsity): scope, floors, overrides, ``round_to``, normalisation.
    A target below what the floors and exclusions allow raises :class:`ConfigError` naming
    the lowest reachable ratio.

    Every candidate confirmed by surgery is run, under the rule of verified surgery
    (:mod:`prunekit.budget.feasible`): an inexact group (``inexact``, by default
    ``groups.inexact``) whose removal makes the pruned model fail to run is kept whole and the
    search runs again over the other groups (the result's ``kept_whole`` names them); a failure
    no inexact group explains raises :class:`~prunekit.surgery.VerificationError`. A pruned
    model that runs but cannot be counted (the MAC counter fails on it) is the one case the
    analytic choice is returned unconfirmed, with a warning that says so.

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
    if inexact is None:
        inexact = getattr(groups, "inexact", None)
    feasible = Feasibility(model, example_inputs, inexact, f"target {target}")
    table: LatencyTable | None = None
    if target.metric == "latency":
        timer = timer or RuntimeTimer(target.runtime or "onnxruntime")
        tolerance = max(tolerance, LATENCY_TOLERANCE)
        table = _latency_table(model, example_inputs, groups, timer)
    problem = _Problem(model, example_inputs, scores, target, tolerance, feasible)
    while True:  # each pass keeps at least one more group whole
        rest = [g for g in groups if g.name not in problem.whole]
        if not rest:
            raise ConfigError(
                f"target {target}: removing any unit of the groups {list(problem.whole)} makes "
                "the pruned model fail to run, and there is no other prunable group"
            )
        try:
            if table is not None and timer is not None:
                chosen = _select_to_latency(problem, rest, config, timer, table)
            else:
                chosen = _select_counted(problem, rest, config)
        except UnverifiableGroupError as refused:
            problem = dataclasses.replace(problem, whole=(*problem.whole, *refused.groups))
            continue
        every = {
            g.name: chosen.get(g.name, torch.ones(g.n_units, dtype=torch.bool)) for g in groups
        }
        return TargetSelection(every, problem.whole)


def _select_counted(
    problem: _Problem, groups: Sequence[Group], config: SelectionConfig
) -> Selection:
    """Bisect on the analytic cost model, confirm by surgery and counting, and correct the
    analytic goal by the observed ratio (MACs, parameters or bytes)."""
    target, tolerance = problem.target, problem.tolerance
    costs = build_cost_model(problem.model, problem.example_inputs, groups, target.metric)
    knob = Knob(problem.scores, groups, config, costs)
    lowest = knob.at(knob.top)[1]
    if lowest > target.keep * (1 + tolerance):
        raise _unreachable(target, lowest, config, problem.whole)
    selection, analytic = bisect_knob(knob, target.keep, tolerance / 2)
    if target.keep >= 1.0:
        return selection
    dense = costs.dense
    if target.metric == "params":
        dense = _measure(problem.model, problem.example_inputs, target.metric)
    best: tuple[float, Selection] | None = None
    for _ in range(CONFIRM_ROUNDS):
        real = problem.confirm(groups, selection, dense)
        if real is None:
            warnings.warn(
                f"target {target}: the pruned model runs but its {target.metric} could not be "
                f"counted; the analytic ratio {analytic:.4f} is unconfirmed",
                stacklevel=4,
            )
            return selection if best is None else best[1]
        error = abs(real / target.keep - 1)
        if best is None or error < best[0]:
            best = (error, selection)
        if error <= tolerance:
            break
        selection, analytic = bisect_knob(knob, target.keep * analytic / real, tolerance / 2)
    assert best is not None
    if best[0] > COARSE_ERROR and config.scope == "layer":
        return _finer(problem, groups, config, best)
    return best[1]


COARSE_ERROR = 0.015
"""Above this relative error a per-layer selection is too coarse for the target (one sparsity for
every group moves in steps of whole big units, e.g. RegNet's 128-channel grouped convolutions)."""


def _finer(
    problem: _Problem,
    groups: Sequence[Group],
    config: SelectionConfig,
    best: tuple[float, Selection],
) -> Selection:
    """The closer of ``best`` (per layer) and a global ranking of mean-normalised scores, which
    moves one unit at a time and kept the accuracy of per-layer selection in the selection
    benchmark (docs/benchmarks.md, "Choosing the default selection")."""
    finer = dataclasses.replace(config, scope="global", normalize="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = _select_counted(problem, groups, finer)
    target = problem.target
    real = problem.confirm(
        groups, selection, _measure(problem.model, problem.example_inputs, target.metric)
    )
    if real is None:
        warnings.warn(
            f"target {target}: one sparsity per layer lands {100 * best[0]:.1f}% off (units too "
            "coarse), and a global ranking's choice runs but could not be counted: kept the "
            "per-layer one",
            stacklevel=5,
        )
        return best[1]
    if abs(real / target.keep - 1) < best[0]:
        warnings.warn(
            f"target {target}: one sparsity per layer lands {100 * best[0]:.1f}% off (units too "
            "coarse); used a global ranking of mean-normalised scores instead",
            stacklevel=5,
        )
        return selection
    return best[1]


def _latency_table(
    model: nn.Module, example_inputs: Any, groups: Sequence[Group], timer: RuntimeTimer
) -> LatencyTable:
    """The per-layer table of every layer whose weight ``groups`` prune, measured once."""
    pruned_weights = {m.tensor for g in groups for m in g.members}
    only = [w for w in layer_shapes(model, example_inputs) if w in pruned_weights]
    return measure_latency_table(model, example_inputs, timer, only=only)


def _select_to_latency(
    problem: _Problem,
    groups: Sequence[Group],
    config: SelectionConfig,
    timer: RuntimeTimer,
    table: LatencyTable,
) -> Selection:
    """Bisect on the measured per-layer ``table``, time the real pruned model against the dense
    one, and move the table's goal to where the measured ratios say the target lies."""
    model, target, tolerance = problem.model, problem.target, problem.tolerance
    knob = Knob(problem.scores, groups, config, LatencyModel(table, groups, model))
    confirm = timer.with_repeats(2 * timer.repeats + 1)  # one model pair: afford more rounds
    goal = target.keep
    seen: list[tuple[float, float]] = []
    best: tuple[float, float, Selection] | None = None
    for _ in range(LATENCY_ROUNDS):
        selection, analytic = bisect_knob(knob, goal, tolerance / 4)
        pruned, _ = apply_surgery(model, groups, selection)
        problem.feasible.check(groups, selection, pruned)
        times = confirm.time({"dense": model, "pruned": pruned}, problem.example_inputs)
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
            stacklevel=4,
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
