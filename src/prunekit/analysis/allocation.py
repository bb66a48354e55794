"""Per-layer sparsity allocation from sensitivity curves under a global budget.

Method (sensitivity-driven allocation, as in Distiller's sensitivity analysis and the per-layer
thresholds of Han et al. 2015, "Learning both Weights and Connections"): every group's curve is
read as the *metric lost* at each sparsity, with ``(0, 0)`` prepended and straight lines between
measured points. For a tolerated loss ``t`` each group gets the largest sparsity whose
interpolated loss is at most ``t`` (no extrapolation beyond the last measured sparsity, never
above ``max_sparsity``). The achieved global sparsity grows with ``t``, so ``t`` is found by
bisection: the smallest tolerance whose allocation reaches the target. Insensitive (flat) layers
therefore take most of the pruning and sensitive ones little.

Where the achieved sparsity jumps (a flat stretch of a curve becomes allowed all at once), the
allocations just below and at the jump are blended linearly so the target is met exactly; the
selection then rounds each layer's count to whole units.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from prunekit.analysis.sensitivity import SensitivityResult
from prunekit.core.groups import Group
from prunekit.errors import ConfigError, SelectionError, check_sparsity

Weight = Literal["units", "params"]
_BISECTIONS = 200


def group_size(group: Group, weight: Weight) -> float:
    """How much of the budget one group counts for: its units, or the elements of its scored
    member tensors (weights, biases, norm scales; not running statistics) when ``params``."""
    if weight == "units":
        return float(group.n_units)
    if weight == "params":
        return float(sum(float(m.view.counts().sum()) for m in group.members if m.scored))
    raise ConfigError(f"weight must be 'units' or 'params', got {weight!r}")


def largest_within(curve: Sequence[tuple[float, float]], tolerance: float) -> float:
    """The largest sparsity on the piecewise-linear ``curve`` of ``(sparsity, loss)`` points
    whose loss is at most ``tolerance`` (0 if none). NaN and infinite losses are never allowed."""
    best = 0.0
    for i, (s, d) in enumerate(curve):
        if d <= tolerance:
            best = s
        if i + 1 < len(curve):
            s_next, d_next = curve[i + 1]
            if d <= tolerance < d_next and math.isfinite(d_next):
                best = s + (tolerance - d) / (d_next - d) * (s_next - s)
    return best


def _loss_curve(result: SensitivityResult, name: str, cap: float) -> list[tuple[float, float]]:
    """The loss curve of ``name`` from sparsity 0, cut at ``cap`` (interpolated there)."""
    points = [(s, d if not math.isnan(d) else math.inf) for s, d in result.drop(name)]
    if not points or points[0][0] > 0.0:
        points.insert(0, (0.0, 0.0))
    cut = [(s, d) for s, d in points if s <= cap]
    beyond = [(s, d) for s, d in points if s > cap]
    if beyond and cut[-1][0] < cap:
        (s0, d0), (s1, d1) = cut[-1], beyond[0]
        d_cap = d0 + (cap - s0) / (s1 - s0) * (d1 - d0) if math.isfinite(d1) else math.inf
        cut.append((cap, d_cap))
    return cut


def allocate(
    result: SensitivityResult,
    groups: Sequence[Group],
    target_sparsity: float,
    *,
    weight: Weight = "units",
    max_sparsity: float = 0.95,
) -> dict[str, float]:
    """Per-group sparsities that together remove ``target_sparsity`` of all units (or of all
    parameters with ``weight="params"``) while losing the least metric (see the module docs).

    Returns group name -> sparsity; :func:`allocation_overrides` turns it into
    ``SelectionConfig(overrides=...)``. Raises :class:`SelectionError` if the target cannot be
    reached with every group at most ``max_sparsity`` and at most its last measured sparsity.
    """
    target = check_sparsity(target_sparsity, "target_sparsity")
    cap = check_sparsity(max_sparsity, "max_sparsity")
    missing = [g.name for g in groups if g.name not in result.curves]
    if not groups or missing:
        raise ConfigError(
            f"no sensitivity curve for group {missing[0]!r}; curves: {result.groups}"
            if missing
            else "allocate needs at least one group"
        )
    sizes = {g.name: group_size(g, weight) for g in groups}
    total = sum(sizes.values())
    if total <= 0:
        raise ConfigError(f"the groups have no {weight} to prune")
    curves = {g.name: _loss_curve(result, g.name, cap) for g in groups}

    def allocation(t: float) -> dict[str, float]:
        return {name: largest_within(curve, t) for name, curve in curves.items()}

    def achieved(alloc: Mapping[str, float]) -> float:
        return sum(sizes[n] * s for n, s in alloc.items()) / total

    if target == 0.0:
        return dict.fromkeys(sizes, 0.0)
    finite = [d for c in curves.values() for _, d in c if math.isfinite(d)]
    lo, hi = min(finite) - 1.0, max(finite)
    most = achieved(allocation(hi))
    if most < target - 1e-12:
        reach = max(s for c in curves.values() for s, _ in c)
        raise SelectionError(
            f"target sparsity {target} is unreachable: at most {most:.4f} of the {weight} can be "
            f"removed with every group at or below max_sparsity={cap} and the sparsities "
            f"measured (up to {reach}); measure the curves at higher sparsities or lower the target"
        )
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if achieved(allocation(mid)) >= target:
            hi = mid
        else:
            lo = mid
    below, at = allocation(lo), allocation(hi)
    a_below, a_at = achieved(below), achieved(at)
    blend = 1.0 if a_at <= a_below else (target - a_below) / (a_at - a_below)
    return {n: below[n] + blend * (at[n] - below[n]) for n in sizes}


def allocation_overrides(
    allocation: Mapping[str, float], groups: Sequence[Group]
) -> dict[str, float]:
    """Turn group name -> sparsity into ``SelectionConfig(overrides=...)``: each group's layer
    name as an exact pattern (glob characters escaped)."""
    by_layer: dict[str, float] = {}
    for group in groups:
        if group.name not in allocation:
            continue
        pattern = glob.escape(group.layer)
        value = allocation[group.name]
        if pattern in by_layer and by_layer[pattern] != value:
            raise ConfigError(
                f"groups of layer {group.layer!r} have different sparsities; overrides are per "
                "layer, so select these groups with their own SelectionConfig"
            )
        by_layer[pattern] = value
    return by_layer
