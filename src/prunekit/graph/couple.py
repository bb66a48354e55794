"""The slot algebra that op rules are written in: elementwise coupling, reductions, contractions.

All functions take *items*: ``(shape, slots)`` pairs describing one tensor operand, so that rules
can couple real tensors and virtual views of them (a matrix product is an elementwise product in a
broadcast frame followed by a sum, see :func:`contract`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from prunekit.graph.atoms import AtomGraph, Slots, compress, left_pad, vary

Item = tuple[tuple[int, ...], Slots]
ReduceKind = Literal["sum", "mean", "fixed"]


def couple(graph: AtomGraph, items: Sequence[Item], out_shape: Sequence[int]) -> Slots:
    """Couple operands of a broadcasting elementwise op; return the output's slots.

    Along every output dimension of size > 1, the slots of all operands that vary along it are
    unified position by position. An operand that has that dimension at full size but no slot
    along it (an input image, a constant made inside ``forward``) cannot shrink, so the other
    operands must keep its size there (:meth:`AtomGraph.keep_size`).
    """
    ndim = len(out_shape)
    padded = [
        ((1,) * (ndim - len(shape)) + tuple(shape), tuple(left_pad(s, ndim) for s in slots))
        for shape, slots in items
    ]
    done: set[tuple[int, int, int, int]] = set()
    for d in range(ndim):
        if out_shape[d] <= 1:
            continue
        labelled: list[tuple[int, int, Tensor]] = []
        bare = False
        for i, (shape, slots) in enumerate(padded):
            if shape[d] <= 1:
                continue
            along = [(i, k, s) for k, s in enumerate(slots) if s.shape[d] > 1]
            labelled.extend(along)
            bare = bare or not along
        if not labelled:
            continue
        if bare:
            for _, _, s in labelled:
                graph.keep_size(s, d)
            continue
        i0, k0, first = labelled[0]
        for i, k, s in labelled[1:]:
            if i == i0 and k == k0:
                continue
            key = (i0, k0, i, k)
            if key not in done:
                done.add(key)
                graph.union(first, s)
    return _merge_slots([s for _, slots in padded for s in slots])


def _merge_slots(slots: Sequence[Tensor]) -> Slots:
    """Keep one slot per family: drop a slot whose varying dims are covered by an earlier one."""
    kept: list[Tensor] = []
    for s in slots:
        dims = vary(s)
        if any(dims <= vary(k) for k in kept):
            continue
        kept = [k for k in kept if not vary(k) < dims]
        kept.append(s)
    return tuple(kept)


def reduce(
    graph: AtomGraph,
    slots: Slots,
    dims: Sequence[int],
    how: ReduceKind,
    keepdim: bool,
    clean: bool = True,
) -> Slots:
    """Slots after reducing over ``dims``.

    ``sum``: removing zeroed positions leaves a sum unchanged, so the reduction is exact; a slot
    that also varies along kept dims is coarsened (all atoms of a reduced fibre become one unit).
    ``mean``: like ``sum`` but removal changes the count, so the atoms are marked inexact.
    ``fixed``: the result depends on every position (max, softmax, sort), so they are fixed.
    A sum or mean of values that are not zero at removed positions (``clean=False``, e.g.
    ``sigmoid(x)``: the masked model adds ``sigmoid(0)`` for each) is ``fixed`` too.
    """
    if not clean and how in ("sum", "mean"):
        how = "fixed"
    out: list[Tensor] = []
    for s in slots:
        ndim = s.dim()
        red = sorted({d % ndim for d in dims})
        along = [d for d in red if s.shape[d] > 1]
        if along:
            if how == "fixed":
                graph.fix(s)
            elif how == "mean":
                graph.mark_inexact(s)
            first = s
            for d in along:
                first = first.narrow(d, 0, 1)
            if vary(s) - set(red):
                graph.union(first, s)
            s = first
        if not keepdim:
            s = s.reshape([n for d, n in enumerate(s.shape) if d not in red])
        c = compress(s) if s.dim() else None
        if c is not None:
            out.append(c)
    return tuple(out)


def contract(
    graph: AtomGraph,
    a: Item,
    b: Item,
    a_frame: Sequence[int],
    b_frame: Sequence[int],
    frame_shape: Sequence[int],
    sum_dims: Sequence[int],
    clean: bool = True,
) -> Slots:
    """A product summed over ``sum_dims`` (``mm``, ``bmm``, attention scores); ``clean`` says
    whether the product is zero at removed positions of the summed dims (one operand is clean).

    ``a_frame`` / ``b_frame`` say where each operand dimension sits in a common broadcast frame
    (in increasing order; frame dims an operand lacks are broadcast), e.g. ``mm`` of ``[n, k]``
    by ``[k, m]`` uses the frame ``[n, k, m]`` with ``a_frame = (0, 1)``, ``b_frame = (1, 2)``.
    """
    items = [_to_frame(a, a_frame, frame_shape), _to_frame(b, b_frame, frame_shape)]
    slots = couple(graph, items, frame_shape)
    return reduce(graph, slots, sum_dims, "sum", keepdim=False, clean=clean)


def _to_frame(item: Item, where: Sequence[int], frame_shape: Sequence[int]) -> Item:
    """Place an operand in the frame: its dim ``i`` becomes frame dim ``where[i]`` (increasing)."""
    shape, slots = item
    placed = [1] * len(frame_shape)
    for src, dst in enumerate(where):
        placed[dst] = shape[src]
    moved = []
    for s in slots:
        view = [1] * len(frame_shape)
        for src, dst in enumerate(where):
            view[dst] = s.shape[src]
        moved.append(s.reshape(view))
    return tuple(placed), tuple(moved)


def vector(graph: AtomGraph, shape: Sequence[int], slots: Slots, dim: int) -> Tensor | None:
    """The atoms along ``dim`` as a vector, for rules that map one dimension (channels).

    A slot that also varies along other dimensions is fixed (its units are not channels), and so
    is a dimension of size > 1 without any slot: ``None`` is returned then.
    """
    dim = dim % len(shape)
    found: list[Tensor] = []
    for s in slots:
        if s.shape[dim] <= 1:
            continue
        if vary(s) != {dim}:
            graph.fix(s)
            continue
        found.append(s.reshape(-1))
    if not found:
        return None
    for other in found[1:]:
        graph.union(found[0], other)
    return found[0]


def place(vec: Tensor, ndim: int, dim: int) -> Tensor:
    """A slot of ``ndim`` dims that varies along ``dim`` with the atoms ``vec``."""
    shape = [1] * ndim
    shape[dim % ndim] = vec.numel()
    return vec.reshape(shape)


def fixed_vector(n: int) -> Tensor:
    return torch.zeros(n, dtype=torch.int64)
