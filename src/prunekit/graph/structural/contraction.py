"""Rules of products summed over a dimension: matrix products and fused attention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from prunekit.graph.atoms import left_pad
from prunekit.graph.couple import Item, contract, couple
from prunekit.graph.structural.context import (
    RuleContext,
    first_tensor,
    fix_along,
    item,
    labelled_along,
)


def mm_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``mm``, ``bmm``, ``addmm``, ``baddbmm``: the contracted dimension is coupled between the
    operands; the output has the row units of ``a`` and the column units of ``b``."""
    bias = args[0] if str(ctx.func).startswith(("aten.addmm", "aten.baddbmm")) else None
    a, b = (args[1], args[2]) if bias is not None else (args[0], args[1])
    clean = ctx.is_clean(a) or ctx.is_clean(b)
    if not clean and labelled_along(ctx, a, -1):
        ctx.note("a product of two operands that are not zero where units are removed")
    ia, ib = item(ctx, a), item(ctx, b)
    if a.dim() == 2:
        n, k = a.shape
        frame: tuple[int, ...] = (n, k, b.shape[1])
        slots = contract(ctx.graph, ia, ib, (0, 1), (1, 2), frame, (1,), clean)
    else:
        bt, n, k = a.shape
        frame = (bt, n, k, b.shape[2])
        slots = contract(ctx.graph, ia, ib, (0, 1, 2), (0, 2, 3), frame, (2,), clean)
    if bias is not None:
        slots = couple(ctx.graph, [(tuple(out.shape), slots), item(ctx, bias)], tuple(out.shape))
    ctx.set_slots(out, slots)


def sdpa_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Fused scaled-dot-product attention ``softmax(q k^T + mask) v`` on ``[..., L, E]`` inputs.
    Without ``scale`` it scales by ``1 / sqrt(E)``: ``E`` then keeps its size (whole heads)."""
    q, k, v = args[0], args[1], args[2]
    if kwargs.get("scale") is None:
        if labelled_along(ctx, q, -1) or labelled_along(ctx, k, -1):
            ctx.note("without scale= the head size sets the scale: it keeps its size")
        fix_along(ctx, q, -1)
        fix_along(ctx, k, -1)
    *batch, length, e = q.shape
    k_item, v_item = _grouped_query(ctx, q, k), _grouped_query(ctx, q, v)
    s_len, ev = k.shape[-2], v.shape[-1]
    nb = len(batch)
    bdims = tuple(range(nb))
    frame = (*batch, length, s_len, e)
    scores = contract(
        ctx.graph,
        item(ctx, q),
        k_item,
        (*bdims, nb, nb + 2),
        (*bdims, nb + 1, nb + 2),
        frame,
        (nb + 2,),
        ctx.is_clean(q) or ctx.is_clean(k),
    )
    mask = kwargs.get("attn_mask")
    score_shape = (*batch, length, s_len)
    if isinstance(mask, Tensor):
        scores = couple(ctx.graph, [(score_shape, scores), item(ctx, mask)], score_shape)
    for s in scores:
        if s.shape[-1] > 1:
            ctx.graph.fix(s)
    frame = (*batch, length, s_len, ev)
    slots = contract(
        ctx.graph,
        (score_shape, scores),
        v_item,
        (*bdims, nb, nb + 1),
        (*bdims, nb + 1, nb + 2),
        frame,
        (nb + 1,),
        ctx.is_clean(v),
    )
    ctx.set_slots(first_tensor(out), slots)


def _grouped_query(ctx: RuleContext, q: Tensor, kv: Tensor) -> Item:
    """Grouped-query attention (``enable_gqa``): key / value head ``g`` serves query heads
    ``g * n_rep ... (g + 1) * n_rep - 1``, as if each kv head were repeated ``n_rep`` times."""
    if q.dim() < 3 or kv.dim() != q.dim() or kv.shape[-3] in (q.shape[-3], 1):
        return item(ctx, kv)
    n_rep = q.shape[-3] // kv.shape[-3]
    shape = list(kv.shape)
    shape[-3] *= n_rep
    slots = tuple(
        s.repeat_interleave(n_rep, dim=-3) if s.dim() >= 3 and s.shape[-3] > 1 else s
        for s in (left_pad(s, kv.dim()) for s in ctx.slots(kv))
    )
    return tuple(shape), slots
