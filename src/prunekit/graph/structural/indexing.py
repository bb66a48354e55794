"""Rules of ops that pick, split or join positions: slicing, indexing, split / chunk / unbind,
cat and stack."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from prunekit.graph.atoms import compress, left_pad, vary
from prunekit.graph.couple import Item, couple
from prunekit.graph.structural.context import RuleContext, arg, fix_along, item, tensors_in
from prunekit.graph.structural.movement import movement


def slice_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``x[a:b]`` along a dimension: exact movement, but a slice of a labelled dimension has
    bounds written in code that pruning cannot update, so its units are fixed."""
    x = args[0]
    dim = arg(args, kwargs, 1, "dim", 0) % max(x.dim(), 1)
    start = arg(args, kwargs, 2, "start", None) or 0
    end = arg(args, kwargs, 3, "end", None)
    step = arg(args, kwargs, 4, "step", 1)
    full = start in (0, None) and (end is None or end >= x.shape[dim]) and step == 1
    if not full:
        fix_along(ctx, x, dim)
    movement(ctx, args, kwargs, out, along=dim)


def select_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``x[i]`` along a labelled dimension: fixed (the index is written in code)."""
    dim = arg(args, kwargs, 1, "dim", 0)
    fix_along(ctx, args[0], dim)
    movement(ctx, args, kwargs, out, along=dim)


def gather_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``index_select`` / ``gather``: an index tensor picks positions, so a labelled indexed
    dimension is fixed."""
    dim = arg(args, kwargs, 1, "dim", 0)
    fix_along(ctx, args[0], dim, strict=True)
    along = dim if str(ctx.func).startswith("aten.index_select") else None
    movement(ctx, args, kwargs, out, along=along)


def index_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Advanced indexing ``x[idx0, idx1, ...]``: the indexed dimensions are fixed."""
    indices = arg(args, kwargs, 1, "indices", [])
    for d, idx in enumerate(indices):
        if idx is not None:
            fix_along(ctx, args[0], d, strict=True)
    movement(ctx, args, kwargs, out)


def split_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``chunk`` (ATen ``split.Tensor``): the number of pieces is written in code and their
    size follows the width, so pieces of equal size are coupled position by position (each
    loses the same positions). Pieces of unequal size, ``split_with_sizes`` (sizes written in
    code) and ``unbind`` (one piece per position) keep the dimension whole. ``torch.split``
    with an integer size reaches ATen as ``split.Tensor`` too; its function rule
    (:mod:`prunekit.graph.structural.functions`) keeps the dimension whole first."""
    x = args[0]
    dim = _split_dim(ctx, args, kwargs) % max(x.dim(), 1)
    movement(ctx, args, kwargs, out, along=dim)
    pieces = [p for p in out if isinstance(p, Tensor)]
    if not any(s.shape[dim] > 1 for s in ctx.slots(x)):
        return
    name = str(ctx.func)
    if len({p.shape[dim] for p in pieces}) > 1 or not name.startswith("aten.split.Tensor"):
        ctx.note(f"pieces of sizes written in code (or one per position) keep dim {dim}")
        fix_along(ctx, x, dim)
        return
    size = pieces[0].shape[dim] if pieces[0].dim() == x.dim() else 1
    for s in ctx.slots(x):
        if s.shape[dim] > 1:
            chunks = s.unflatten(dim, (len(pieces), size))
            ctx.graph.union(chunks.narrow(dim, 0, 1), chunks)


def _split_dim(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    if str(ctx.func).startswith("aten.unbind"):
        return int(arg(args, kwargs, 1, "dim", 0))
    return int(arg(args, kwargs, 2, "dim", 0))


def keep_whole(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Ops that write values to positions chosen by an index tensor (``scatter``,
    ``index_put``, ``index_add``): every unit of every operand is kept, and the output carries
    none (whatever reads it keeps its own width)."""
    for t in tensors_in([*args, *kwargs.values()]):
        for s in ctx.slots(t):
            ctx.note("writes to positions picked by an index tensor: every unit is kept")
            ctx.graph.fix(s)
    if isinstance(out, Tensor) and out is not (args[0] if args else None):
        ctx.set_slots(out, ())


def cat_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Concatenation: units of the inputs follow each other along ``dim``; along every other
    dimension the inputs are coupled like an elementwise op (a slot that varies along ``dim``
    and other dims, such as the halves of attention heads in a rotary embedding, keeps its other
    dims and is coupled with the other parts' through its first position along ``dim``)."""
    parts = [t for t in args[0] if isinstance(t, Tensor) and t.numel() > 0]
    ndim = out.dim()
    dim = arg(args, kwargs, 1, "dim", 0) % ndim
    others: list[Item] = []
    along: list[Tensor | None] = []
    extra: set[int] = set()
    for t in parts:
        slots = [left_pad(s, ndim) for s in ctx.slots(t)]
        mine = [s for s in slots if s.shape[dim] > 1]
        for s in mine[1:]:
            ctx.graph.union(mine[0], s)
        along.append(mine[0] if mine else None)
        if mine:
            extra |= vary(mine[0]) - {dim}
        rest = tuple(s for s in slots if s.shape[dim] == 1)
        shape = tuple(1 if d == dim else n for d, n in enumerate(t.shape))
        others.append((shape, rest))
    shape = tuple(1 if d == dim else n for d, n in enumerate(out.shape))
    merged = couple(ctx.graph, others, shape)
    frame = [out.shape[d] if d in extra else 1 for d in range(ndim)]
    pieces: list[Tensor] = []
    firsts: list[Tensor] = []
    for t, slot_along in zip(parts, along, strict=True):
        size = list(frame)
        size[dim] = t.shape[dim]
        if slot_along is None:
            pieces.append(torch.zeros(size, dtype=torch.int64))
            continue
        pieces.append(slot_along.expand(size))
        if vary(slot_along) - {dim}:
            firsts.append(pieces[-1].narrow(dim, 0, 1))
    for first in firsts[1:]:
        ctx.graph.union(firsts[0], first)
    joined = torch.cat(pieces, dim)
    slot = compress(joined)
    ctx.set_slots(out, (*merged, slot) if slot is not None and bool(joined.any()) else merged)


def stack_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``stack``: inputs are coupled elementwise and the new dimension holds no units."""
    parts = [t for t in args[0] if isinstance(t, Tensor)]
    dim = arg(args, kwargs, 1, "dim", 0) % out.dim()
    merged = couple(ctx.graph, [item(ctx, t) for t in parts], tuple(parts[0].shape))
    ctx.set_slots(out, tuple(s.unsqueeze(dim) for s in merged))
