"""Rules of ops that keep positions where they are: elementwise ops, copies, factories,
reductions and scans along one dimension."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prunekit.graph.atoms import compress_all, left_pad
from prunekit.graph.couple import ReduceKind, couple, reduce
from prunekit.graph.structural.context import (
    Rule,
    RuleContext,
    arg,
    first_tensor,
    fix_along,
    item,
    labelled_along,
    tensors_in,
)


def pointwise(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Broadcasting elementwise ops: every operand's units are coupled position by position."""
    operands = tensors_in([*args, *kwargs.values()])
    target = args[0] if _is_inplace(out, args) else first_tensor(out)
    slots = couple(ctx.graph, [item(ctx, t) for t in operands], tuple(target.shape))
    ctx.set_slots(target, slots)


def _is_inplace(out: Any, args: Sequence[Any]) -> bool:
    return bool(args) and out is args[0]


def passthrough(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """The output has the units of the first argument (copies, dtype casts, detach)."""
    ctx.set_slots(first_tensor(out), ctx.slots(args[0]))


def copy_into(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``dst.copy_(src)``: ``dst`` now holds ``src``'s units. When ``dst`` is a view, the
    tensor it belongs to keeps its own labels for those positions, so ``src``'s units are
    coupled with them position by position (both lose the same units)."""
    dst, src = args[0], args[1]
    if getattr(dst, "_base", None) is None:
        ctx.set_slots(dst, ctx.slots(src))
        return
    slots = couple(ctx.graph, [item(ctx, dst), item(ctx, src)], tuple(dst.shape))
    ctx.set_slots(dst, slots)


def fresh(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Factories like ``empty_like``: the output holds no units."""


def reduction(how: ReduceKind, dims_at: int, keep_at: int, all_default: bool = True) -> Rule:
    def rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
        x = args[0]
        dims = arg(args, kwargs, dims_at, "dim", None) if dims_at >= 0 else None
        if dims is None or (isinstance(dims, (list, tuple)) and not dims and all_default):
            dims = list(range(x.dim()))
        dims = [dims] if isinstance(dims, int) else list(dims)
        keepdim = bool(arg(args, kwargs, keep_at, "keepdim", False)) if keep_at >= 0 else False
        clean = ctx.is_clean(x)
        if how != "fixed" and not clean and any(labelled_along(ctx, x, d) for d in dims):
            ctx.note(f"{how} over dims {dims} of values that are not zero where units are removed")
        slots = reduce(ctx.graph, ctx.slots(x), dims, how, keepdim, clean=clean)
        ctx.set_slots(first_tensor(out), slots)

    rule.__doc__ = f"Reduction over the given dims ({how})."
    return rule


def topk_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``topk(x, k, dim)``: the ``k`` outputs along ``dim`` are the largest inputs, not
    positions of the input, so units along ``dim`` are kept; the other dims pass through."""
    x = args[0]
    dim = arg(args, kwargs, 2, "dim", -1) % max(x.dim(), 1)
    if labelled_along(ctx, x, dim):
        ctx.note(f"topk along dim {dim} picks values, not positions: the dim is kept")
    fix_along(ctx, x, dim)
    slots = []
    for s in ctx.slots(x):
        s = left_pad(s, x.dim())
        slots.append(s.narrow(dim, 0, 1) if s.shape[dim] > 1 else s)
    for t in out:
        ctx.set_slots(t, compress_all(slots))


def scan(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Ops that mix all positions along ``dim`` but keep the shape (softmax, cumsum, sort):
    units along ``dim`` are fixed, the others pass through."""
    x = args[0]
    fix_along(ctx, x, arg(args, kwargs, 1, "dim", -1))
    ctx.set_slots(first_tensor(out), ctx.slots(x))
