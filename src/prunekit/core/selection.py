"""Selection: which units go, from scores and a :class:`SelectionConfig`.

Global selection ranks every unit of every group on one scale and removes the lowest; layer-wise
selection removes the same fraction from each group. Per-layer overrides (by name pattern) take a
group out of the global pool with its own sparsity; N:M groups always keep exactly N of every M.
The number removed is exact: ``round(sparsity * units)``, as in ``torch.nn.utils.prune``.

Every group has a *floor*, the fewest units it may keep (:func:`group_floor`): ``min_keep``
units, and for structural groups (channels, neurons, heads) also ``ceil(min_keep_fraction *
units)``. A global ranking on raw scores otherwise collapses the layers whose scores run small
(a scale the ranking does not correct) to a single channel, and a network with a one-channel
layer has lost most of what it can compute.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.scores import NORMALIZATIONS, Normalization, check_scores, normalize_scores
from prunekit.core.views import AxisView, IndexView
from prunekit.errors import ConfigError, SelectionError, check_sparsity

Scope = Literal["global", "layer"]


@dataclass(frozen=True)
class SelectionConfig:
    """How to choose the units to remove.

    Attributes:
        sparsity: fraction of units removed, in [0, 1). N:M groups ignore it (the pattern fixes it).
        threshold: instead of a sparsity, remove every unit whose (normalised) score is below this.
        scope: ``"global"`` ranks all groups together; ``"layer"`` applies the sparsity per group.
        overrides: layer-name glob pattern -> sparsity for matching groups (first match wins).
        min_keep: every group keeps at least this many units.
        min_keep_fraction: every structural group (its units are slices of a dimension:
            channels, neurons, heads) of more than one unit also keeps at least
            ``ceil(min_keep_fraction * units)``; see :func:`group_floor`.
        round_to: kept units per group are rounded up to a multiple of this (hardware widths).
        normalize: per-group score normalisation before a global ranking.
    """

    sparsity: float | None = None
    threshold: float | None = None
    scope: Scope = "global"
    overrides: Mapping[str, float] = field(default_factory=dict)
    min_keep: int = 1
    min_keep_fraction: float = 0.1
    round_to: int = 1
    normalize: Normalization = "none"

    def __post_init__(self) -> None:
        if self.sparsity is not None and self.threshold is not None:
            raise ConfigError("give either sparsity or threshold, not both")
        if self.sparsity is not None:
            object.__setattr__(self, "sparsity", check_sparsity(self.sparsity))
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError(f"threshold must be a finite number, got {self.threshold!r}")
        if self.scope not in ("global", "layer"):
            raise ConfigError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.min_keep < 0 or self.round_to < 1:
            raise ConfigError(
                f"min_keep must be >= 0 and round_to >= 1, got {self.min_keep}, {self.round_to}"
            )
        fraction = self.min_keep_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction < 1.0
        ):
            raise ConfigError(
                "min_keep_fraction must be a number in [0, 1) (the fraction of each group's "
                f"units always kept), got {fraction!r}"
            )
        object.__setattr__(self, "min_keep_fraction", float(fraction))
        overrides = dict(self.overrides)
        for pattern, value in overrides.items():
            check_sparsity(value, f"override sparsity for {pattern!r}")
        object.__setattr__(self, "overrides", overrides)

    def override_for(self, layer: str) -> float | None:
        for pattern, value in self.overrides.items():
            if fnmatch.fnmatchcase(layer, pattern):
                return value
        return None


def select(scores: Scores, groups: Sequence[Group], config: SelectionConfig) -> Selection:
    """Decide, for every unit of every group, whether it is kept."""
    check_scores(scores, groups)
    ranked = normalize_scores({g.name: scores[g.name] for g in groups}, config.normalize)
    selection: Selection = {}
    pool: list[Group] = []
    for group in groups:
        s = ranked[group.name]
        override = config.override_for(group.layer)
        floor = group_floor(group, config)
        if group.pattern is not None:
            selection[group.name] = keep_pattern(s, *group.pattern)
        elif override is not None:
            n_remove = _n_remove(override, group.n_units)
            selection[group.name] = keep_top(s, n_remove, config, floor=floor)
        elif config.threshold is not None:
            n_below = int((s < config.threshold).sum())
            selection[group.name] = keep_top(s, n_below, config, floor=floor)
        elif config.scope == "layer":
            n_remove = _n_remove(_sparsity(config), group.n_units)
            selection[group.name] = keep_top(s, n_remove, config, floor=floor)
        else:
            pool.append(group)
    if pool:
        selection.update(_select_global(ranked, pool, config))
    return {g.name: selection[g.name] for g in groups}


def is_structural(group: Group) -> bool:
    """Whether ``group``'s units are slices of a dimension (channels, neurons, heads), the units
    a fractional floor protects; single weights, tiles and N:M slots are not."""
    return group.pattern is None and isinstance(group.root.view, (AxisView, IndexView))


def group_floor(group: Group, config: SelectionConfig) -> int:
    """The fewest units ``group`` may keep: ``max(min_keep, ceil(min_keep_fraction * units))``,
    at most the group's size.

    The fraction applies to structural groups (:func:`is_structural`) of more than one unit.
    Fine-grained groups (element, block) keep only ``min_keep``: a layer with 5% of its weights
    left keeps its full width, and exact global sparsity is what unstructured pruning promises.
    A one-unit group (a whole block at layer granularity) is all or nothing, so a fraction of it
    would forbid removing it whatever ``min_keep`` says; ``min_keep`` alone governs it.
    """
    n = group.n_units
    fraction = 0
    if config.min_keep_fraction > 0 and n > 1 and is_structural(group):
        # the epsilon keeps 0.1 * 30 = 3.0000000000000004 from rounding up to 4
        fraction = math.ceil(config.min_keep_fraction * n - 1e-9)
    return min(n, max(config.min_keep, fraction))


def _sparsity(config: SelectionConfig) -> float:
    if config.sparsity is None:
        raise ConfigError("a selection needs a sparsity or a threshold")
    return config.sparsity


def _n_remove(sparsity: float, n_units: int) -> int:
    return round(sparsity * n_units)


def _round_kept(n_keep: int, n_units: int, round_to: int) -> int:
    return min(n_units, -(-n_keep // round_to) * round_to) if n_keep else 0


def keep_top(
    scores: Tensor, n_remove: int, config: SelectionConfig, *, floor: int | None = None
) -> Tensor:
    """Keep all but the ``n_remove`` lowest scores, at least ``floor`` of them (by default
    ``min_keep``), with the kept count rounded up to a multiple of ``round_to``."""
    n = scores.numel()
    floor = min(config.min_keep if floor is None else floor, n)
    n_keep = _round_kept(n - min(n_remove, n - floor), n, config.round_to)
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[:n_keep]] = True
    return keep


def keep_pattern(scores: Tensor, n: int, m: int) -> Tensor:
    """Keep the ``n`` highest of every ``m`` consecutive scores."""
    chunks = scores.reshape(-1, m)
    keep = torch.zeros_like(chunks, dtype=torch.bool)
    keep.scatter_(1, torch.topk(chunks, n, dim=1, sorted=False).indices, True)
    return keep.reshape(-1)


def max_global_removal(pool: Sequence[Group], config: SelectionConfig) -> int:
    """The most units a global selection over ``pool`` can remove while every group keeps its
    floor."""
    return sum(g.n_units - group_floor(g, config) for g in pool)


def _rank_within_owner(owner_sorted: Tensor, n_owners: int) -> Tensor:
    """For units in ascending score order, each unit's rank among the units of its group."""
    by_owner = torch.sort(owner_sorted, stable=True).indices
    counts = torch.bincount(owner_sorted, minlength=n_owners)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(owner_sorted)
    rank[by_owner] = torch.arange(owner_sorted.numel()) - starts[owner_sorted[by_owner]]
    return rank


def _select_global(ranked: Scores, pool: Sequence[Group], config: SelectionConfig) -> Selection:
    """Remove the ``round(sparsity * total)`` lowest-scored units over all groups of ``pool``,
    skipping those a group needs to keep its floor."""
    sizes = [g.n_units for g in pool]
    flat = torch.cat([ranked[g.name].float() for g in pool])
    owner = torch.repeat_interleave(torch.arange(len(pool)), torch.tensor(sizes))
    n_remove = _n_remove(_sparsity(config), flat.numel())
    order = torch.sort(flat, stable=True).indices
    owner_sorted = owner[order]
    rank = _rank_within_owner(owner_sorted, len(pool))
    floors = [group_floor(g, config) for g in pool]
    limits = torch.tensor([n - f for n, f in zip(sizes, floors, strict=True)])
    eligible = order[rank < limits[owner_sorted]]
    if eligible.numel() < n_remove:
        raise SelectionError(
            f"global sparsity {config.sparsity} needs {n_remove} of {flat.numel()} units removed, "
            f"but the per-group floors (min_keep={config.min_keep}, "
            f"min_keep_fraction={config.min_keep_fraction}) allow only {eligible.numel()} "
            f"(sparsity {eligible.numel() / flat.numel():.4f})"
        )
    removed = torch.zeros(flat.numel(), dtype=torch.bool)
    removed[eligible[:n_remove]] = True
    selection: Selection = {}
    for group, floor, keep in zip(pool, floors, torch.split(~removed, sizes), strict=True):
        if config.round_to > 1:
            n_cut = group.n_units - int(keep.sum())
            keep = keep_top(ranked[group.name], n_cut, config, floor=floor)
        selection[group.name] = keep
    return selection
