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

A target can need a tolerance at which the curves say a layer alone already wrecks the model.
Then the allocation is no longer guided by the curves: once most curves sit at their floor (an
accuracy at chance), any extra loss is "free" to them, and the one curve still falling takes the
pruning up to its cap. On a BatchNorm ResNet measured without recalibration this put the last
residual stream at 7 of 64 channels and the fine-tuned accuracy at 44% where a uniform
allocation reached 89%. So every group's loss at its allocated sparsity is read off its curve:
with ``max_drop`` a loss above it is refused (:class:`SelectionError`); without it, a group whose
curve says it alone halves an accuracy-like metric (or doubles a loss-like one) is warned about.
"""

from __future__ import annotations

import glob
import itertools
import math
import warnings
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


def loss_at(curve: Sequence[tuple[float, float]], sparsity: float) -> float:
    """The loss of the piecewise-linear ``curve`` of ``(sparsity, loss)`` points at ``sparsity``
    (the last point's loss beyond it)."""
    for (s0, d0), (s1, d1) in itertools.pairwise(curve):
        if s0 <= sparsity <= s1:
            if sparsity == s0:
                return d0
            return d1 if sparsity == s1 else d0 + (sparsity - s0) / (s1 - s0) * (d1 - d0)
    return curve[-1][1] if sparsity >= curve[-1][0] else curve[0][1]


def _collapse_limit(result: SensitivityResult) -> float:
    """The loss at which one group alone halves an accuracy-like metric or doubles a loss-like
    one (``inf`` when the baseline is not positive, where neither reading makes sense)."""
    if not result.baseline > 0.0 or not math.isfinite(result.baseline):
        return math.inf
    return result.baseline / 2 if result.higher_is_better else result.baseline


def check_drops(
    result: SensitivityResult,
    curves: Mapping[str, Sequence[tuple[float, float]]],
    alloc: Mapping[str, float],
    target: float,
    max_drop: float | None,
) -> None:
    """Refuse (``max_drop``) or warn about groups whose curve loses too much at their allocated
    sparsity (see the module docs)."""
    drops = {n: loss_at(curves[n], s) for n, s in alloc.items() if s > 0.0}
    limit = _collapse_limit(result) if max_drop is None else max_drop
    over = sorted((n for n, d in drops.items() if d > limit + 1e-12), key=lambda n: -drops[n])
    if not over:
        return
    worst = over[0]
    what = (
        f"group {worst!r} at sparsity {alloc[worst]:.3f} loses {drops[worst]:.4g} of the dense "
        f"metric {result.baseline:.4g} by its own curve ({len(over)} of {len(drops)} pruned "
        f"groups lose more than {limit:.4g})"
    )
    if max_drop is not None:
        raise SelectionError(
            f"allocate: target sparsity {target:.4g} needs more than max_drop={max_drop}: {what}; "
            "lower the target or raise max_drop"
        )
    warnings.warn(
        f"allocate: at target sparsity {target:.4g}, {what}: the curves no longer guide the "
        "allocation (a layer may be wrecked); measure them with sensitivity(recalibrate=...) "
        "on BatchNorm networks, lower the target, or pass max_drop= to refuse",
        UserWarning,
        stacklevel=3,
    )


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
    max_drop: float | None = None,
) -> dict[str, float]:
    """Per-group sparsities that together remove ``target_sparsity`` of all units (or of all
    parameters with ``weight="params"``) while losing the least metric (see the module docs).

    Returns group name -> sparsity; :func:`allocation_overrides` turns it into
    ``SelectionConfig(overrides=...)``. Raises :class:`SelectionError` if the target cannot be
    reached with every group at most ``max_sparsity`` and at most its last measured sparsity, or
    if some group's curve loses more than ``max_drop`` (metric units, positive = worse) at its
    allocated sparsity. Without ``max_drop``, warns when a group's curve says it alone halves an
    accuracy-like metric (or doubles a loss-like one) at its allocated sparsity.
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
    alloc = {n: below[n] + blend * (at[n] - below[n]) for n in sizes}
    check_drops(result, curves, alloc, target, max_drop)
    return alloc


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
