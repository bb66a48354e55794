"""Where inexact units are normalised, so that verification can reproduce the normalisation
on the kept units only.

A LayerNorm, an RMSNorm or a ``mean`` over a pruned dimension marks its units *inexact*
(:meth:`~prunekit.graph.atoms.AtomGraph.mark_inexact`): zeroing a unit is not removing it
there, because the statistics are taken over every position. To verify such a removal anyway,
the reference model runs that normalisation on the kept positions only. This module records,
during the trace, *which module's input* is normalised and along which dimension
(:class:`NormSite`, atoms), and turns that into units once the groups are known
(:class:`Normalisation`): per position along that dimension, the group and unit there, and the
module's tensors that hold one entry per position (the affine weight and bias), which the
reference slices like surgery does.

A normalisation whose input is not the input of a module (a ``mean`` in the model's own
``forward`` over a tensor it computed) or whose positions vary along several dimensions
cannot be reproduced this way; it is recorded with the reason (``problem``), and its groups
stay unverified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunekit.graph.atoms import Slots, vary

Unit = tuple[str, int]
"""(group name, unit index)."""


@dataclass(frozen=True)
class NormSite:
    """A normalising reduction seen during the trace, in atoms.

    Attributes:
        op: the ATen op that reduces over the units.
        where: the module path running that op.
        atoms: the atoms of the normalised positions, in order (all of them if ``problem``).
        module: the module whose input is normalised (``None`` if none was found).
        inputs: ``(positional argument, dim)`` of that module's inputs carrying the positions.
        problem: why a kept-units reference cannot reproduce it, or ``None``.
        through: True if the module's output holds the normalised positions along the same
            dim (a normalisation layer); False if its weights read them (a convolution whose
            weights are standardised over its inputs), so its output is not indexed by them.
    """

    op: str
    where: str
    atoms: Tensor
    module: str | None = None
    inputs: tuple[tuple[int, int], ...] = ()
    problem: str | None = None
    through: bool = True


@dataclass(frozen=True)
class Normalisation:
    """A normalisation over units of inexact groups, and what reproduces it on kept units.

    Attributes:
        module: the module whose input is normalised (``""`` is the model itself).
        inputs: ``(positional argument, dim)`` of its inputs that carry the units.
        units: per position along that dim, its ``(group, unit)``, or ``None`` where no group
            can remove it.
        tensors: ``(name relative to the module, dim)`` of the module's tensors with one entry
            per position (affine weight and bias), sliced with the kept positions.
        op: the ATen op that normalises, and ``where`` the module running it (for messages).
        problem: why the kept-units reference cannot reproduce it, or ``None``.
        through: see :class:`NormSite`; when False the reference runs the module on the kept
            inputs and returns its output as it is (nothing to scatter back).
    """

    module: str
    inputs: tuple[tuple[int, int], ...]
    units: tuple[Unit | None, ...]
    tensors: tuple[tuple[str, int], ...]
    op: str
    where: str
    problem: str | None = None
    through: bool = True

    @property
    def groups(self) -> frozenset[str]:
        """The groups with units among the normalised positions."""
        return frozenset(u[0] for u in self.units if u is not None)

    def kept(self, selection: Mapping[str, Tensor]) -> Tensor:
        """Per position, whether ``selection`` keeps it (a group it does not name is kept)."""
        flags = [
            u is None or u[0] not in selection or bool(selection[u[0]][u[1]]) for u in self.units
        ]
        return torch.tensor(flags, dtype=torch.bool)


def find_site(
    slot: Tensor,
    op: str,
    stack: Sequence[str],
    inputs: Sequence[Sequence[Any]],
    slots_of: Callable[[Any], Slots],
) -> NormSite:
    """Which module's input ``slot`` (the normalised positions) is, innermost module first.

    ``stack`` and ``inputs`` are the running modules' paths and positional inputs, outermost
    first; ``slots_of(t)`` gives the slots of a tensor. A module matches when one of its inputs
    carries exactly these atoms, in order, along one dimension.
    """
    where = stack[-1] if stack else ""
    dims = vary(slot)
    if len(dims) != 1:
        return NormSite(
            op, where, slot.reshape(-1).unique(),
            problem=f"{op} in {_label(where)} normalises positions that vary along several "
            "dimensions (e.g. inside attention heads)",
        )  # fmt: skip
    atoms = slot.reshape(-1)
    for path, args in zip(reversed(stack), reversed(inputs), strict=True):
        found = tuple(_carrying(args, atoms, slots_of))
        if found:
            return NormSite(op, where, atoms, path, found)
    return NormSite(
        op, where, atoms,
        problem=f"{op} in {_label(where)} normalises a tensor computed in that forward, not "
        "the input of a module (wrap the normalisation in a module to verify it)",
    )  # fmt: skip


def _label(path: str) -> str:
    return f"module {path!r}" if path else "the model's own forward"


def _carrying(
    args: Sequence[Any], atoms: Tensor, slots_of: Callable[[Any], Slots]
) -> list[tuple[int, int]]:
    """``(argument, dim)`` of every tensor in ``args`` that carries ``atoms`` along one dim."""
    found = []
    for i, t in enumerate(args):
        if not isinstance(t, Tensor):
            continue
        for s in slots_of(t):
            along = vary(s)
            if len(along) == 1 and s.numel() == atoms.numel() and torch.equal(s.reshape(-1), atoms):
                (d,) = along
                found.append((i, d + t.dim() - s.dim()))
                break
    return found


TensorDim = tuple[tuple[str, ...], int, int, int]
"""A dimension of a tensor: (its names, dim, first atom, size)."""


def normalisations(
    sites: Sequence[NormSite],
    comp: np.ndarray,
    unit_of: Mapping[int, Unit],
    tensors: Sequence[TensorDim],
) -> tuple[Normalisation, ...]:
    """The sites in units, one per module (sites without removable units are dropped).

    ``comp`` is the unit (component) of every atom, ``unit_of`` the ``(group, unit)`` of every
    component that is a unit, ``tensors`` every labelled tensor dimension.
    """
    found: dict[str, Normalisation] = {}
    problems: list[Normalisation] = []
    for site in sites:
        comps = comp[site.atoms.numpy()]
        units = tuple(unit_of.get(int(c)) for c in comps)
        if all(u is None for u in units):
            continue
        norm = Normalisation(
            site.module or "",
            site.inputs,
            units,
            (),
            site.op,
            site.where,
            site.problem,
            site.through,
        )
        if norm.problem is None:
            norm = _with_tensors(norm, comp, comps, tensors)
        seen = found.get(norm.module)
        same = seen is None or (seen.units, seen.inputs) == (norm.units, norm.inputs)
        if norm.problem is None and not same:
            norm = replace(
                norm,
                problem=f"{_label(norm.module)} normalises different units (or inputs) on "
                "different calls",
            )
        if norm.problem is not None:
            problems.append(norm)
        else:
            found[norm.module] = norm
    return (*found.values(), *problems)


def _with_tensors(
    norm: Normalisation, comp: np.ndarray, comps: np.ndarray, tensors: Sequence[TensorDim]
) -> Normalisation:
    """Find the module's tensor dimensions with one entry per normalised position (same units
    in the same order); any other dimension of the module holding these units cannot be sliced
    consistently, so the normalisation gets a ``problem`` instead."""
    prefix = f"{norm.module}." if norm.module else ""
    removable = {int(c) for c, u in zip(comps, norm.units, strict=True) if u is not None}
    aligned = []
    for names, dim, start, size in tensors:
        name = next((n for n in names if n.startswith(prefix)), None)
        if name is None:
            continue
        own = comp[start : start + size]
        if removable.isdisjoint(own.tolist()):
            continue
        if not np.array_equal(own, comps):
            return replace(
                norm,
                problem=f"tensor {name!r} (dim {dim}) of {_label(norm.module)} holds the "
                "normalised units, but not one entry per normalised position",
            )
        aligned.append((name[len(prefix) :], dim))
    return replace(norm, tensors=tuple(aligned))
