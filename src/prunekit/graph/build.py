"""From a trace to groups: connected components of the coupling graph are units; units that
touch the same tensor dimensions form one :class:`~prunekit.core.groups.Group`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.core.groups import Group, Member
from prunekit.core.views import AxisView, IndexView, UnitView
from prunekit.graph.atoms import FIXED, components
from prunekit.graph.tracer import Family, StructureTrace, trace
from prunekit.ops.rules import rule_for


class StructuralGroups(list[Group]):
    """The groups of a model, plus which of them are *inexact*: removing their units changes a
    normalisation (LayerNorm, a mean) over the pruned dimension, so zeroing them is not the same
    as removing them and they cannot be verified by masking."""

    inexact: frozenset[str]

    def __init__(self, groups: Sequence[Group], inexact: frozenset[str] = frozenset()) -> None:
        super().__init__(groups)
        self.inexact = inexact


def build_structural_groups(
    model: nn.Module,
    example_inputs: Any,
    *,
    ignore: Sequence[str] = (),
) -> StructuralGroups:
    """The coupled groups of channels / neurons / heads of ``model``, found by tracing it on
    ``example_inputs`` (a tensor, a tuple of positional arguments or a dict of keyword arguments).

    Every group's members are all the tensor slices removed with its units: the producing
    layer's rows and bias, normalisation entries, the consumers' columns, residual and concat
    partners. The model's outputs keep their shape (the final classifier is never narrowed);
    ``ignore`` lists module-name glob patterns whose outputs also keep their width. An operation
    the tracer cannot map raises :class:`~prunekit.errors.UnsupportedLayerError`.
    """
    return groups_from_trace(model, trace(model, example_inputs, ignore=ignore))


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
    units = _unit_table(comp, families)
    by_signature: dict[tuple[int, ...], list[tuple[int, list[np.ndarray]]]] = {}
    for unit, fams, runs in units:
        if any(families[fi].is_param for fi in fams):
            by_signature.setdefault(fams, []).append((unit, runs))
    groups: list[Group] = []
    inexact: set[str] = set()
    taken: set[str] = set()
    for signature in sorted(by_signature):
        found = by_signature[signature]
        found.sort(key=lambda u: int(u[1][0][0]))  # by first position in the root tensor dim
        group = _make_group(model, families, signature, [runs for _, runs in found], taken)
        groups.append(group)
        if inexact_comps.intersection(u for u, _ in found):
            inexact.add(group.name)
    return StructuralGroups(groups, frozenset(inexact))


def _unit_table(
    comp: np.ndarray, families: Sequence[Family]
) -> list[tuple[int, tuple[int, ...], list[np.ndarray]]]:
    """For every removable unit: its component id, the families it touches (sorted) and its
    sorted positions in each of them. Fixed atoms and atoms coupled with nothing (no rule
    claimed them) are not units."""
    fixed = comp[FIXED]
    sizes = np.bincount(comp)
    cs, fs, ps = [], [], []
    for fi, fam in enumerate(families):
        c = comp[fam.start : fam.start + fam.size]
        idx = np.nonzero((c != fixed) & (sizes[c] > 1))[0]
        cs.append(c[idx])
        fs.append(np.full(len(idx), fi))
        ps.append(idx)
    if not cs:
        return []
    c_all, f_all, p_all = np.concatenate(cs), np.concatenate(fs), np.concatenate(ps)
    if not len(c_all):
        return []
    o = np.lexsort((p_all, f_all, c_all))
    c_all, f_all, p_all = c_all[o], f_all[o], p_all[o]
    new_comp = np.r_[True, c_all[1:] != c_all[:-1]]
    new_run = new_comp | np.r_[True, f_all[1:] != f_all[:-1]]
    comp_starts = [*np.flatnonzero(new_comp).tolist(), len(c_all)]
    run_starts = np.flatnonzero(new_run)
    table = []
    run_i = 0
    for a, b in itertools.pairwise(comp_starts):
        run_j = run_i
        while run_j < len(run_starts) and run_starts[run_j] < b:
            run_j += 1
        bounds = [*run_starts[run_i:run_j].tolist(), b]
        fams = tuple(int(f_all[x]) for x in bounds[:-1])
        runs = [p_all[x:y] for x, y in itertools.pairwise(bounds)]
        table.append((int(c_all[a]), fams, runs))
        run_i = run_j
    return table


def _make_group(
    model: nn.Module,
    families: Sequence[Family],
    signature: tuple[int, ...],
    units: list[list[np.ndarray]],
    taken: set[str],
) -> Group:
    members = []
    for k, fi in enumerate(signature):
        fam = families[fi]
        members.append(Member(fam.tensor, _view(fam, [u[k] for u in units]), scored=fam.is_param))
    root_fam = families[signature[0]]
    layer = root_fam.tensor.rpartition(".")[0]
    name = base = layer or root_fam.tensor
    k = 1
    while name in taken:
        name, k = f"{base}#{k}", k + 1
    taken.add(name)
    output = _output(model, layer, root_fam, members[0].view)
    return Group(name, layer, tuple(members), output=output)


def _view(fam: Family, per_unit: list[np.ndarray]) -> UnitView:
    n, repeat = len(per_unit), len(per_unit[0])
    if all(len(p) == repeat for p in per_unit):
        grid = np.stack(per_unit)
        offset = int(grid[0, 0])
        if np.array_equal(grid, offset + np.arange(n * repeat).reshape(n, repeat)):
            return AxisView(fam.shape, fam.dim, n, offset, repeat)
    return IndexView(fam.shape, fam.dim, tuple(tuple(p.tolist()) for p in per_unit))


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
