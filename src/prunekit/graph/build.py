"""From a trace to groups: connected components of the coupling graph are units; units that
touch the same tensor dimensions form one :class:`~prunekit.core.groups.Group`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.core.groups import Group, Member
from prunekit.core.views import AxisView, IndexView, UnitView
from prunekit.graph.atoms import FIXED, components
from prunekit.graph.norms import Normalisation, TensorDim, Unit, normalisations
from prunekit.graph.tracer import Compute, Family, KeptWhole, StructureTrace, trace
from prunekit.ops.rules import rule_for


class StructuralGroups(list[Group]):
    """The groups of a model, plus which of them are *inexact*: removing their units changes a
    normalisation (LayerNorm, a mean) over the pruned dimension, so zeroing them is not the same
    as removing them and they cannot be verified by masking alone. ``normalisations`` says
    where each such normalisation runs, so that verification can reproduce it on the kept
    units only (:mod:`prunekit.surgery.reference`). ``kept`` lists where an op rule kept
    units whole rather than map them (the op, its module path and why)."""

    inexact: frozenset[str]
    normalisations: tuple[Normalisation, ...]
    kept: tuple[KeptWhole, ...]

    def __init__(
        self,
        groups: Sequence[Group],
        inexact: frozenset[str] = frozenset(),
        normalisations: Sequence[Normalisation] = (),
        kept: Sequence[KeptWhole] = (),
    ) -> None:
        super().__init__(groups)
        self.inexact = inexact
        self.normalisations = tuple(normalisations)
        self.kept = tuple(kept)


def build_structural_groups(
    model: nn.Module,
    example_inputs: Any,
    *,
    ignore: Sequence[str] = (),
    compute: Compute = "meta",
) -> StructuralGroups:
    """The coupled groups of channels / neurons / heads of ``model``, found by tracing it on
    ``example_inputs`` (a tensor, a tuple of positional arguments or a dict of keyword arguments).

    Every group's members are all the tensor slices removed with its units: the producing
    layer's rows and bias, normalisation entries, the consumers' columns, residual and concat
    partners. The model's outputs keep their shape (the final classifier is never narrowed);
    ``ignore`` lists module-name glob patterns whose outputs also keep their width. An operation
    the tracer cannot map raises :class:`~prunekit.errors.UnsupportedLayerError`. ``compute``
    says how the traced forward runs (see :func:`~prunekit.graph.tracer.trace`): on meta
    tensors by default, for real as a fallback.
    """
    return groups_from_trace(model, trace(model, example_inputs, ignore=ignore, compute=compute))


def unit_components(structure: StructureTrace) -> np.ndarray:
    """The unit (connected component) of every atom."""
    graph = structure.graph
    return components(graph.n_atoms, graph.edge_array())


def groups_from_trace(model: nn.Module, structure: StructureTrace) -> StructuralGroups:
    """Turn a trace into groups: units (components) grouped by the tensor dims they touch."""
    comp = unit_components(structure)
    inexact_atoms = structure.graph.inexact
    inexact_comps = (
        set(np.unique(comp[torch.cat(inexact_atoms).numpy()]).tolist()) if inexact_atoms else set()
    )
    order = {name: i for i, name in enumerate(structure.first_use)}
    families = sorted(
        (f for f in structure.families if f.tensor in order),
        key=lambda f: (order[f.tensor], f.dim),
    )
    runs = _unit_runs(comp, families)
    if runs is None:
        return StructuralGroups([], frozenset(), kept=structure.kept)
    inexact_arr = np.asarray(sorted(inexact_comps), dtype=np.int64)
    is_param = np.asarray([f.is_param for f in families], dtype=bool)
    groups: list[Group] = []
    inexact: set[str] = set()
    taken: set[str] = set()
    unit_of: dict[int, Unit] = {}
    for signature, units in _by_signature(runs):
        if not is_param[list(signature)].any():
            continue
        first = runs.unit_first[units]
        units = units[np.argsort(runs.positions[runs.start[first]], kind="stable")]
        group = _make_group(model, families, signature, runs, runs.unit_first[units], taken)
        groups.append(group)
        if np.isin(runs.unit_comp[units], inexact_arr).any():
            inexact.add(group.name)
            unit_of.update((int(c), (group.name, i)) for i, c in enumerate(runs.unit_comp[units]))
    dims: list[TensorDim] = [((f.tensor, *f.aliases), f.dim, f.start, f.size) for f in families]
    norms = normalisations(structure.norm_sites, comp, unit_of, dims) if unit_of else ()
    return StructuralGroups(groups, frozenset(inexact), norms, structure.kept)


@dataclass(frozen=True)
class _Runs:
    """The removable units and where their positions lie.

    ``positions`` holds, for every unit (connected component) and every family it touches, the
    unit's sorted positions in that family: a *run* ``positions[start[r]:end[r]]`` of family
    ``fam[r]``. A unit's runs are ``unit_first[u] .. unit_first[u] + unit_count[u] - 1``, in
    increasing family order.
    """

    positions: np.ndarray
    start: np.ndarray
    end: np.ndarray
    fam: np.ndarray
    unit_first: np.ndarray
    unit_count: np.ndarray
    unit_comp: np.ndarray


def _unit_runs(comp: np.ndarray, families: Sequence[Family]) -> _Runs | None:
    """Fixed atoms and atoms coupled with nothing (no rule claimed them) are not units."""
    if not families:
        return None
    fixed = comp[FIXED]
    sizes = np.bincount(comp)
    fam_start = np.asarray([f.start for f in families], dtype=np.int64)
    fam_size = np.asarray([f.size for f in families], dtype=np.int64)
    f_all = np.repeat(np.arange(len(families)), fam_size)
    p_all = np.arange(len(f_all)) - np.repeat(np.cumsum(fam_size) - fam_size, fam_size)
    c_all = comp[fam_start[f_all] + p_all]
    keep = (c_all != fixed) & (sizes[c_all] > 1)
    c_all, f_all, p_all = c_all[keep], f_all[keep], p_all[keep]
    if not len(c_all):
        return None
    o = np.argsort(c_all, kind="stable")  # (family, position) order is already increasing
    c_all, f_all, p_all = c_all[o], f_all[o], p_all[o]
    new_comp = np.r_[True, c_all[1:] != c_all[:-1]]
    new_run = new_comp | np.r_[True, f_all[1:] != f_all[:-1]]
    start = np.flatnonzero(new_run)
    end = np.r_[start[1:], len(c_all)]
    run_comp = c_all[start]
    unit_first = np.flatnonzero(np.r_[True, run_comp[1:] != run_comp[:-1]])
    unit_count = np.diff(np.r_[unit_first, len(start)])
    return _Runs(p_all, start, end, f_all[start], unit_first, unit_count, run_comp[unit_first])


def _by_signature(runs: _Runs) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Units grouped by the families they touch (the signature), signatures in sorted order.

    Units are bucketed by a random polynomial hash of their family sequence (and its length),
    vectorised; every bucket is then checked exactly against its first unit."""
    n_units = len(runs.unit_first)
    unit_of_run = np.repeat(np.arange(n_units), runs.unit_count)
    rank = np.arange(len(runs.start)) - runs.unit_first[unit_of_run]
    rng = np.random.default_rng(0)
    width = int(runs.unit_count.max())
    weight = rng.integers(1, 2**63, size=width + 1, dtype=np.uint64)
    terms = (runs.fam.astype(np.uint64) + np.uint64(1)) * weight[rank]
    key = np.add.reduceat(terms, runs.unit_first) + runs.unit_count.astype(np.uint64) * weight[-1]
    _, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse))]
    found: list[tuple[tuple[int, ...], np.ndarray]] = []
    for i in range(len(bounds) - 1):
        units = order[bounds[i] : bounds[i + 1]]
        first, count = runs.unit_first[units], int(runs.unit_count[units[0]])
        fams = runs.fam[first[:, None] + np.arange(count)]
        if not (fams == fams[:1]).all():  # a hash collision: split exactly
            rows, inv = np.unique(fams, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            found.extend((tuple(r.tolist()), units[inv == j]) for j, r in enumerate(rows))
            continue
        found.append((tuple(fams[0].tolist()), units))
    return sorted(found, key=lambda item: item[0])


def _make_group(
    model: nn.Module,
    families: Sequence[Family],
    signature: tuple[int, ...],
    runs: _Runs,
    first_runs: np.ndarray,
    taken: set[str],
) -> Group:
    members = []
    for k, fi in enumerate(signature):
        fam = families[fi]
        view = _view(fam, runs, first_runs + k)
        members.append(Member(fam.tensor, view, scored=fam.is_param))
    root_fam = families[signature[0]]
    layer = root_fam.tensor.rpartition(".")[0]
    name = base = layer or root_fam.tensor
    k = 1
    while name in taken:
        name, k = f"{base}#{k}", k + 1
    taken.add(name)
    output = _output(model, layer, root_fam, members[0].view)
    return Group(name, layer, tuple(members), output=output)


def _view(fam: Family, runs: _Runs, run_ids: np.ndarray) -> UnitView:
    starts, ends = runs.start[run_ids], runs.end[run_ids]
    lengths = ends - starts
    n, repeat = len(run_ids), int(lengths[0])
    if bool((lengths == repeat).all()):
        grid = runs.positions[starts[:, None] + np.arange(repeat)]
        offset = int(grid[0, 0])
        if np.array_equal(grid, offset + np.arange(n * repeat).reshape(n, repeat)):
            return AxisView(fam.shape, fam.dim, n, offset, repeat)
        return IndexView(fam.shape, fam.dim, tuple(map(tuple, grid.tolist())))
    index = tuple(tuple(runs.positions[a:b].tolist()) for a, b in zip(starts, ends, strict=True))
    return IndexView(fam.shape, fam.dim, index)


def _output(model: nn.Module, layer: str, fam: Family, view: UnitView) -> tuple[str, int] | None:
    """Where the units appear in the root layer's output, for activation-based estimators."""
    if not isinstance(view, AxisView) or view.repeat != 1 or view.n_units != fam.size:
        return None
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        return None
    rule = rule_for(module)
    if rule is None or rule.out_units_tied(module):
        return None
    if (
        fam.tensor != (f"{layer}.{rule.weight}" if layer else rule.weight)
        or fam.dim != rule.out_dim
    ):
        return None
    return (layer, rule.output_dim)
