"""The one knob a target search turns, and its bisection.

The sparsity of a :class:`~prunekit.core.selection.SelectionConfig` (global: the fraction of the
pool's units removed; layer scope: the fraction removed from each group) is the knob; the cost
ratio of its selection falls as it rises, so :func:`bisect_knob` closes a bracket on the goal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from prunekit.budget.cost import CostModel
from prunekit.budget.refine import refine_past_big_units
from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.selection import SelectionConfig, max_global_removal, select

MAX_STEPS = 60
"""Bisection steps at most."""


class Costs(Protocol):
    """What the search bisects on: the cost ratio of a selection to the dense model."""

    def ratio(self, selection: Selection) -> float: ...


class Knob:
    """The selection and analytic cost ratio at each sparsity of the config's knob."""

    def __init__(
        self, scores: Scores, groups: Sequence[Group], config: SelectionConfig, costs: Costs
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


def bisect_knob(knob: Knob, goal: float, band: float) -> tuple[Selection, float]:
    """The selection whose analytic ratio is closest to ``goal``. Ratios fall as sparsity
    rises; the bracket closes to adjacent selections, and when the unit between them is too
    big a step the search goes on past it (:func:`refine_past_big_units`)."""
    lo, (sel_lo, r_lo) = 0.0, knob.at(0.0)
    if r_lo <= goal or knob.top <= 0.0:
        return sel_lo, r_lo
    hi, (sel_hi, r_hi) = knob.top, knob.at(knob.top)
    if r_hi >= goal:
        return sel_hi, r_hi
    for _ in range(MAX_STEPS):
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
