"""Close the last gap to a target when one unit is too big a step.

Bisection on the global sparsity walks the global ranking one unit at a time, so the two
selections it ends between differ by one unit. Usually that unit is a single channel and the
step is tiny; but a unit can span a whole convolution group (RegNet's grouped convolutions
couple 128 channels into one unit) and its removal alone can move MACs by several percent.
:func:`refine_past_big_units` then keeps that unit and goes on down the ranking, removing the
next units whose removal does not overshoot, until the cost is within the band.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prunekit.budget.cost import CostModel
from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.scores import normalize_scores
from prunekit.core.selection import SelectionConfig, group_floor

MAX_EVALUATIONS = 4000
"""Cost evaluations at most (each is one scatter-add over the groups' units)."""


def refine_past_big_units(
    above: Selection,
    ratio: float,
    goal: float,
    band: float,
    *,
    scores: Scores,
    groups: Sequence[Group],
    config: SelectionConfig,
    costs: CostModel,
) -> tuple[Selection, float]:
    """From ``above`` (analytic ``ratio`` above ``goal``), remove more units in the global
    ranking's order, skipping any whose removal would take the ratio below
    ``goal * (1 - band)`` or a group below its floor; stop once within ``goal * (1 + band)``.

    Only for global selections without ``round_to`` (the ranking is then the only rule)."""
    pool = [g for g in groups if g.pattern is None and config.override_for(g.layer) is None]
    if config.scope != "global" or config.round_to != 1 or not pool:
        return above, ratio
    ranked = normalize_scores({g.name: scores[g.name] for g in pool}, config.normalize)
    flat = torch.cat([ranked[g.name].float() for g in pool])
    owner = torch.repeat_interleave(
        torch.arange(len(pool)), torch.tensor([g.n_units for g in pool])
    )
    starts = torch.cumsum(torch.tensor([0] + [g.n_units for g in pool]), 0)
    keep = {name: k.clone() for name, k in above.items()}
    kept = [int(keep[g.name].sum()) for g in pool]
    floors = [group_floor(g, config) for g in pool]
    evaluations = 0
    for index in torch.sort(flat, stable=True).indices.tolist():
        if ratio <= goal * (1 + band) or evaluations >= MAX_EVALUATIONS:
            break
        i = int(owner[index])
        unit = index - int(starts[i])
        mask = keep[pool[i].name]
        if not bool(mask[unit]) or kept[i] <= floors[i]:
            continue
        mask[unit] = False
        evaluations += 1
        trial = costs.ratio(keep)
        if trial < goal * (1 - band):
            mask[unit] = True  # this unit alone overshoots: keep it
            continue
        ratio, kept[i] = trial, kept[i] - 1
    return keep, ratio
