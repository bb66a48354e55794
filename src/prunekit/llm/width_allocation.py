"""How a width target becomes whole units: the head units and MLP neurons of a transformer
(:class:`UnitKind`), and how many of each go from every block (:func:`allocate`, the rule; or
:func:`candidate_splits`, every feasible split, for the data-driven choice). See
:mod:`prunekit.llm.width` for the rule and its reasons."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from prunekit.core.groups import Group
from prunekit.errors import ConfigError


@dataclass(frozen=True)
class UnitKind:
    """Width units of one kind (``heads`` or ``mlp``), equally many in every layer.

    ``unit_params`` is the number of parameters one unit holds, added over all layers (what
    removing one unit from every layer removes); kept widths are multiples of ``step``."""

    kind: str
    patterns: tuple[str, ...]
    layers: int
    units: int
    unit_params: int
    step: int = 1

    def removals(self) -> list[int]:
        """Feasible per-layer removal counts, ascending: none, or down to a kept width that is a
        positive multiple of ``step``."""
        kept = range(self.units - 1, 0, -1)
        return [0, *(self.units - k for k in kept if k % self.step == 0)]

    def params(self, removed: int) -> int:
        return removed * self.unit_params

    def half_step(self) -> float:
        """Half the parameters of the coarsest gap between feasible removals."""
        return self.params(self.step) / 2


def unit_kind(kind: str, groups: Sequence[Group], patterns: Sequence[str], step: int) -> UnitKind:
    """The :class:`UnitKind` of the groups whose root layer matches ``patterns``."""
    matched = [g for g in groups if any(fnmatch.fnmatchcase(g.layer, p) for p in patterns)]
    if not matched:
        raise ConfigError(
            f"{kind}=True, but no prunable group's layer matches {list(patterns)}; switch "
            f"{kind} off or give this model's layer name patterns"
        )
    widths = sorted({g.n_units for g in matched})
    if len(widths) != 1:
        raise ConfigError(
            f"{kind} groups have different widths {widths} across layers; width pruning keeps "
            "every layer equally wide, so the config can describe it"
        )
    per_unit = sum(float(sum(m.view.counts().mean() for m in g.members)) for g in matched)
    return UnitKind(kind, tuple(patterns), len(matched), widths[0], round(per_unit), step)


@dataclass(frozen=True)
class WidthAllocation:
    """Per-layer removals chosen for a parameter target (units per layer before / removed)."""

    heads_per_layer: int
    heads_removed: int
    mlp_per_layer: int
    mlp_removed: int
    target_params: int
    planned_params: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _closest(kind: UnitKind, target: float) -> int:
    return min(kind.removals(), key=lambda r: (abs(target - kind.params(r)), r))


def _split(target: float, heads: UnitKind, mlp: UnitKind) -> tuple[int, int]:
    """Heads rounded down to their proportional share, MLP neurons for the rest."""
    share = target / (heads.params(heads.units) + mlp.params(mlp.units))
    floor = int(share * heads.units + 1e-9)
    pairs = []
    for h in (r for r in heads.removals() if r >= floor):
        m = _closest(mlp, target - heads.params(h))
        error = abs(target - heads.params(h) - mlp.params(m))
        if error <= mlp.half_step():
            return h, m
        pairs.append((error, h, m))
    if not pairs:
        return 0, _closest(mlp, target)
    _, h, m = min(pairs)
    return h, m


def candidate_splits(target: float, heads: UnitKind, mlp: UnitKind) -> list[WidthAllocation]:
    """Every split of ``target`` between head units and MLP neurons that lands within half an
    MLP step of it, fewest head units first (the candidates of ``split="data"``)."""
    found = []
    for h in heads.removals():
        m = _closest(mlp, target - heads.params(h))
        planned = heads.params(h) + mlp.params(m)
        if abs(target - planned) <= mlp.half_step():
            found.append(WidthAllocation(heads.units, h, mlp.units, m, round(target), planned))
    return found


def allocate(target: float, heads: UnitKind | None, mlp: UnitKind | None) -> WidthAllocation:
    """Per-layer head-unit and MLP-neuron removals that remove closest to ``target``
    parameters, by the rule in the module docstring. Raises ConfigError when the result misses
    the target by more than half of the finest step (the target is out of reach)."""
    if heads is None and mlp is None:
        raise ConfigError("nothing to prune: no head or MLP units")
    if heads is not None and mlp is not None:
        h, m = _split(target, heads, mlp)
    elif heads is not None:
        h, m = _closest(heads, target), 0
    else:
        assert mlp is not None
        h, m = 0, _closest(mlp, target)
    planned = (heads.params(h) if heads else 0) + (mlp.params(m) if mlp else 0)
    finest = mlp if mlp is not None else heads
    assert finest is not None
    if abs(planned - target) > finest.half_step():
        kinds = [k for k in (heads, mlp) if k is not None]
        most = sum(k.params(k.removals()[-1]) for k in kinds)
        keeps = {"heads": "one head unit", "mlp": f"{mlp.step if mlp else 0} MLP neurons"}
        raise ConfigError(
            f"cannot remove {target:,.0f} parameters with {' and '.join(k.kind for k in kinds)}: "
            f"at most {most:,} can go while every layer keeps "
            f"{' and '.join(keeps[k.kind] for k in kinds)}; lower the sparsity or allow the "
            "other kind"
        )
    return WidthAllocation(
        heads.units if heads else 0, h, mlp.units if mlp else 0, m, round(target), planned
    )
