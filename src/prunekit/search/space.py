"""The search space of a per-layer allocation search, and the budget every candidate must meet.

A candidate is one *keep ratio* per prunable layer (the fraction of its units kept), bounded
below by the layer's floor (``min_keep`` and ``min_keep_fraction``, as in every selection).
Its sparsities become the ``overrides`` of a :class:`~prunekit.config.PruneConfig`, so a
chosen candidate is an ordinary pruning config that :func:`prunekit.prune` and a recipe replay.

The budget (keep at most ``target.keep`` of the dense MACs or parameters) is checked with the
analytic :class:`~prunekit.budget.CostModel`, without surgery. A candidate over the budget is
*projected* onto it, never scored as it is: every sparsity moves the same fraction ``t`` of the
way from the candidate to the layer's floor, with ``t`` found by bisection (the cost falls
monotonically along that path and reaches the floor's cost at ``t = 1``). With ``fill=True``
(one objective) a candidate far under the budget is moved toward the dense model the same way
until it spends the budget, so every scored candidate costs the same and only the allocation
differs, as in AMC's budget-constrained action clipping (He et al. 2018).

The searched parameters are the layers (one keep ratio each) or, given ``stages`` (layer ->
stage, :mod:`prunekit.search.stages`), the stages: every layer of a stage takes the stage's keep
ratio, the projection moves them together, and units are given back a stage at a time.

The budget's metric may be ``macs``, ``params``, ``latency`` or ``size``: ``costs`` holds a
model per metric (:mod:`prunekit.search.costs`), each pricing a selection without surgery.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.selection import SelectionConfig, group_floor, select
from prunekit.errors import ConfigError
from prunekit.search.budget import Budget
from prunekit.search.costs import Costs
from prunekit.search.stages import Param

_BISECTIONS = 30
_MAX_TOP_UP = 256


@dataclass(frozen=True)
class Dimension:
    """One searched layer: its override pattern, its units and the fewest it may keep."""

    pattern: str
    layer: str
    n_units: int
    floor: int

    @property
    def low(self) -> float:
        """The smallest keep ratio (the floor's)."""
        return self.floor / self.n_units

    def sparsity(self, keep: float) -> float:
        """The sparsity that removes a whole number of units for keep ratio ``keep``, exact
        under :func:`~prunekit.core.select` (``round(sparsity * n_units)`` units go)."""
        removed = round((1.0 - min(max(keep, self.low), 1.0)) * self.n_units)
        return min(removed, self.n_units - self.floor) / self.n_units


def dimensions(groups: Sequence[Group], config: SelectionConfig) -> list[Dimension]:
    """One dimension per layer that roots a group with more than its floor; a layer rooting
    several groups is one dimension (overrides are per layer)."""
    seen: dict[str, Dimension] = {}
    for group in groups:
        if group.pattern is not None:
            continue
        floor = group_floor(group, config)
        if floor >= group.n_units:
            continue
        pattern = glob.escape(group.layer)
        if pattern not in seen:
            seen[pattern] = Dimension(pattern, group.layer, group.n_units, floor)
    return list(seen.values())


class SearchSpace:
    """Candidates of a model's searched layers, their cost and their projection on a budget.

    ``groups`` and ``scores`` come from tracing and scoring the model once; ``costs`` maps each
    metric (``"macs"``, ``"params"``, and ``"latency"`` or ``"size"``) to its cost model over
    ``groups``; ``stages`` (layer -> stage) makes the stages the searched parameters.
    """

    def __init__(
        self,
        groups: Sequence[Group],
        scores: Scores,
        config: SelectionConfig,
        costs: Mapping[str, Costs],
        target: Budget,
        *,
        tolerance: float = 0.02,
        stages: Mapping[str, str] | None = None,
    ) -> None:
        self.groups, self.scores, self.costs = list(groups), scores, dict(costs)
        self.base = SelectionConfig(
            sparsity=0.0, scope="layer", min_keep=config.min_keep,
            min_keep_fraction=config.min_keep_fraction, round_to=config.round_to,
        )  # fmt: skip
        self.target, self.tolerance = target, tolerance
        self.dims = dimensions(groups, config)
        if not self.dims:
            raise ConfigError(
                "search: no layer can lose a unit (every group is at its floor, excluded or fixed)"
            )
        self.params = _params(self.dims, stages)
        self.lowest = self.ratio(self.floor_sparsities(), target.metric)
        if self.lowest > target.keep * (1 + 1e-9):
            raise ConfigError(
                f"search: target {target} cannot be reached: with every layer at its floor "
                f"(min_keep_fraction={config.min_keep_fraction}) the lowest reachable "
                f"{target.metric} ratio is {self.lowest:.4f}; ask for "
                f"{target.metric}>={self.lowest:.3f} or lower min_keep_fraction"
            )

    @property
    def names(self) -> list[str]:
        """The searched layers' override patterns, in model order."""
        return [d.pattern for d in self.dims]

    @property
    def param_names(self) -> list[str]:
        """The searched parameters (layers' patterns, or stages), in model order."""
        return [p.name for p in self.params]

    def expand(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per-layer keep ratios of searched-parameter values (a stage's to each layer)."""
        return {pat: float(values[p.name]) for p in self.params for pat in p.patterns}

    def floor_sparsities(self) -> dict[str, float]:
        return {d.pattern: d.sparsity(0.0) for d in self.dims}

    def sparsities(self, keeps: Mapping[str, float]) -> dict[str, float]:
        """Exact per-layer sparsities of keep ratios (missing layers stay dense)."""
        return {d.pattern: d.sparsity(keeps.get(d.pattern, 1.0)) for d in self.dims}

    def selection(self, sparsities: Mapping[str, float]) -> Selection:
        config = SelectionConfig(
            sparsity=0.0, scope="layer", overrides=dict(sparsities), min_keep=self.base.min_keep,
            min_keep_fraction=self.base.min_keep_fraction, round_to=self.base.round_to,
        )  # fmt: skip
        return select(self.scores, self.groups, config)

    def ratio(self, sparsities: Mapping[str, float], metric: str) -> float:
        """Analytic fraction of the dense ``metric`` kept."""
        return self.costs[metric].ratio(self.selection(sparsities))

    def _along(
        self, start: Mapping[str, float], end: Mapping[str, float], t: float
    ) -> dict[str, float]:
        keeps = {
            d.pattern: 1.0 - ((1 - t) * start[d.pattern] + t * end[d.pattern]) for d in self.dims
        }
        return self.sparsities(keeps)

    def project(self, sparsities: Mapping[str, float], *, fill: bool) -> dict[str, float]:
        """``sparsities`` moved onto the budget (see the module docs): unchanged when within
        it (and, with ``fill``, within ``tolerance`` of spending it)."""
        goal, metric = self.target.keep, self.target.metric
        current = self.sparsities({p: 1.0 - s for p, s in sparsities.items()})
        cost = self.ratio(current, metric)
        if cost > goal:
            end = self.floor_sparsities()
        elif fill and cost < goal * (1 - self.tolerance):
            end = dict.fromkeys(current, 0.0)
        else:
            return current
        lo, hi = 0.0, 1.0  # feasible side: lo when filling, hi when cutting
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            over = self.ratio(self._along(current, end, mid), metric) > goal
            if over == (cost > goal):
                lo = mid
            else:
                hi = mid
        projected = self._along(current, end, hi if cost > goal else lo)
        return self._top_up(projected, current) if fill else projected

    def _top_up(
        self, sparsities: dict[str, float], wanted: Mapping[str, float]
    ) -> dict[str, float]:
        """Give units back, one per layer of a searched parameter at a time, to the parameters
        cut furthest below ``wanted`` while the budget allows: one unit of a wide early layer
        can be a few percent of the MACs, more than the tolerance, so bisection alone may stop
        well under the budget."""
        goal, metric = self.target.keep, self.target.metric
        current = dict(sparsities)
        by_name = {d.pattern: d for d in self.dims}

        def shortfall(p: Param) -> float:
            return min((1 - current[q]) / max(1 - wanted[q], 1e-9) for q in p.patterns)

        for _ in range(_MAX_TOP_UP):
            if self.ratio(current, metric) >= goal * (1 - self.tolerance):
                break
            open_ = [p for p in self.params if any(current[q] > 0.0 for q in p.patterns)]
            for param in sorted(open_, key=shortfall):
                trial = dict(current)
                for q in param.patterns:
                    d = by_name[q]
                    trial[q] = max(round(current[q] * d.n_units) - 1, 0) / d.n_units
                if self.ratio(trial, metric) <= goal:
                    current = trial
                    break
            else:
                break
        return current


def _params(dims: Sequence[Dimension], stages: Mapping[str, str] | None) -> list[Param]:
    """One parameter per dimension, or per stage of ``stages`` (layer -> stage; a layer not
    in it is a stage of its own), in model order."""
    if stages is None:
        return [Param(d.pattern, d.low, (d.pattern,)) for d in dims]
    members: dict[str, list[Dimension]] = {}
    for d in dims:
        members.setdefault(stages.get(d.layer, d.layer), []).append(d)
    return [
        Param(name, min(d.low for d in ds), tuple(d.pattern for d in ds))
        for name, ds in members.items()
    ]
