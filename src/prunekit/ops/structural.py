"""Structural rules: how each ATen operation maps units from its inputs to its outputs.

The tracer (:mod:`prunekit.graph.tracer`) runs the model once under a dispatch mode and calls the
rule of every ATen operation that touches a labelled tensor (one that carries units). A rule reads
the slots of its operands from the context, couples atoms that must be removed together, and sets
the slots of the outputs. Generic rules cover whole families (every op tagged ``pointwise``, every
pure data-movement op, reductions); layers with weights have rules in
:mod:`prunekit.ops.structural_layers`.

An operation without a rule is refused with its name and module path. To support a custom op, write
a rule and register it::

    from prunekit.ops.structural import OP_RULES, pointwise
    OP_RULES.register("mylib.fused_act", pointwise)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from prunekit.graph.atoms import AtomGraph, Slots, compress, compress_all, vary
from prunekit.graph.couple import Item, ReduceKind, couple, reduce
from prunekit.registry import Registry


class RuleContext(Protocol):
    """What a rule sees of the trace."""

    graph: AtomGraph

    def slots(self, t: Any) -> Slots:
        """The slots of ``t`` (empty for unlabelled tensors and non-tensors)."""

    def set_slots(self, t: Any, slots: Slots) -> None:
        """Label the output tensor ``t``."""

    def where(self) -> str:
        """The module path being run, for error messages."""

    @property
    def func(self) -> Any:
        """The ATen overload being run."""


Rule = Callable[[RuleContext, Sequence[Any], Mapping[str, Any], Any], None]
"""``rule(ctx, args, kwargs, out)``: couple and label for one ATen call."""


def arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str, default: Any) -> Any:
    """Argument ``i`` (or keyword ``name``) of an ATen call, with its schema default."""
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def item(ctx: RuleContext, t: Tensor) -> Item:
    return tuple(t.shape), ctx.slots(t)


def tensors_in(values: Sequence[Any]) -> list[Tensor]:
    found: list[Tensor] = []
    for v in values:
        if isinstance(v, Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(x for x in v if isinstance(x, Tensor))
    return found


def first_tensor(out: Any) -> Tensor:
    return out if isinstance(out, Tensor) else out[0]


# --- generic families -------------------------------------------------------------------------


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
    """``dst.copy_(src)``: ``dst`` now holds ``src``'s units."""
    ctx.set_slots(args[0], ctx.slots(args[1]))


def fresh(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Factories like ``empty_like``: the output holds no units."""


def movement(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Pure data movement of argument 0 (view, permute, expand, flip, ...): the op is run on the
    slots themselves, so the index mapping is exact."""
    x = args[0]
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    results: list[list[Tensor]] = [[] for _ in outs]
    for s in ctx.slots(x):
        for k, m in enumerate(_run(ctx, args, kwargs, s.expand(x.shape).contiguous())):
            results[k].append(m)
    for o, slots in zip(outs, results, strict=True):
        if isinstance(o, Tensor):
            ctx.set_slots(o, compress_all(slots))


def _run(
    ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], s: Tensor
) -> list[Tensor]:
    result = ctx.func(s, *args[1:], **kwargs)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def view(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Reshape, exact like :func:`movement`. When a labelled dimension is split into several
    (``view(N, g, C // g, H, W)``, ``view(B, T, heads, head_dim)``), only the last factor is
    computed from the shape in typical code; the leading factors are constants or attributes.
    So pruning must keep the leading factors: positions that share the last coordinate are
    coupled (a channel shuffle loses the same position in every group)."""
    x = args[0]
    groups = [g for g in reshape_groups(tuple(x.shape), tuple(out.shape)) if len(g[1]) >= 2]
    slots = []
    for s in ctx.slots(x):
        moved = _run(ctx, args, kwargs, s.expand(x.shape).contiguous())[0]
        for ins, outs in groups:
            if any(s.shape[d] > 1 for d in ins):
                _couple_leading_factors(ctx, moved, outs)
        kept = compress(moved)
        if kept is not None:
            slots.append(kept)
    ctx.set_slots(out, tuple(slots))


def _couple_leading_factors(ctx: RuleContext, moved: Tensor, outs: Sequence[int]) -> None:
    grid = moved
    for d in reversed(range(moved.dim())):
        if d not in outs:
            grid = grid.select(d, 0)
    rows = grid.reshape(-1, moved.shape[outs[-1]])
    ctx.graph.union(rows[:1], rows)


def reshape_groups(src: Sequence[int], dst: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Align a reshape: minimal runs of input and output dims with equal products, e.g.
    ``[N, C, H, W] -> [N, g, C // g, H, W]`` gives ``[0]->[0], [1]->[1, 2], [2]->[3], [3]->[4]``.
    Size-1 dims join the following run (the last run takes trailing ones); a run's output dims
    list only those of size > 1."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) and j < len(dst):
        ins, outs, pa, pb = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                pa *= src[i]
                ins.append(i)
                i += 1
            else:
                pb *= dst[j]
                outs.append(j)
                j += 1
        groups.append((ins, outs))
    if groups:
        groups[-1][0].extend(range(i, len(src)))
        groups[-1][1].extend(range(j, len(dst)))
    return [(ins, [d for d in outs if dst[d] > 1]) for ins, outs in groups]


def channel_shuffle_rule(
    ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any
) -> None:
    """``channel_shuffle(x, g)``: channels are read as a ``[g, C // g]`` grid; pruning keeps
    ``g`` and removes the same position from every group."""
    x, groups = args[0], int(args[1])
    cdim = 1 if x.dim() > 1 else 0
    for s in ctx.slots(x):
        if vary(s) == {cdim}:
            grid = s.reshape(groups, -1)
            ctx.graph.union(grid[:1], grid)
        elif s.shape[cdim] > 1:
            ctx.graph.fix(s)
    movement(ctx, args, kwargs, out)


def pixel_shuffle_rule(
    ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any
) -> None:
    """``pixel_shuffle(x, r)``: channels are a ``[C // r^2, r^2]`` grid; a unit is a whole
    output channel (all ``r^2`` sub-pixels), which the movement then maps exactly."""
    r = int(args[1])
    x = args[0]
    cdim = x.dim() - 3
    slots = []
    for s in ctx.slots(x):
        if vary(s) - {cdim}:
            ctx.graph.fix(s)
            continue
        per = s.reshape(-1, r * r)
        ctx.graph.union(per[:, :1], per)
        slots.append(per[:, :1].expand(-1, r * r).reshape(s.shape))
    moved = [ctx.func(s.expand(x.shape).contiguous(), *args[1:], **kwargs) for s in slots]
    ctx.set_slots(out, compress_all(moved))


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
        _fix_along(ctx, x, dim)
    movement(ctx, args, kwargs, out)


def select_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``x[i]`` along a labelled dimension: fixed (the index is written in code)."""
    _fix_along(ctx, args[0], arg(args, kwargs, 1, "dim", 0))
    movement(ctx, args, kwargs, out)


def gather_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``index_select`` / ``gather``: an index tensor picks positions, so a labelled indexed
    dimension is fixed."""
    _fix_along(ctx, args[0], arg(args, kwargs, 1, "dim", 0))
    movement(ctx, args, kwargs, out)


def index_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Advanced indexing ``x[idx0, idx1, ...]``: the indexed dimensions are fixed."""
    indices = arg(args, kwargs, 1, "indices", [])
    for d, idx in enumerate(indices):
        if idx is not None:
            _fix_along(ctx, args[0], d)
    movement(ctx, args, kwargs, out)


def _fix_along(ctx: RuleContext, x: Tensor, dim: int) -> None:
    dim = dim % max(x.dim(), 1)
    for s in ctx.slots(x):
        if s.shape[dim] > 1:
            ctx.graph.fix(s)


def split_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``split`` / ``chunk`` / ``unbind``: pieces of equal size stay equal after pruning only if
    the same positions are removed from each, so the pieces are coupled position by position.
    Pieces of unequal size have sizes written in code: their units are fixed."""
    x = args[0]
    dim = _split_dim(ctx, args, kwargs) % max(x.dim(), 1)
    movement(ctx, args, kwargs, out)
    pieces = [p for p in out if isinstance(p, Tensor)]
    if not any(s.shape[dim] > 1 for s in ctx.slots(x)):
        return
    if len({p.shape[dim] for p in pieces}) > 1:
        _fix_along(ctx, x, dim)
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


def cat_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Concatenation: units of the inputs follow each other along ``dim``; along every other
    dimension the inputs are coupled like an elementwise op."""
    parts = [t for t in args[0] if isinstance(t, Tensor) and t.numel() > 0]
    ndim = out.dim()
    dim = arg(args, kwargs, 1, "dim", 0) % ndim
    others: list[Item] = []
    along: list[Tensor] = []
    for t in parts:
        slots = ctx.slots(t)
        mine = [s for s in slots if s.shape[dim] > 1]
        for s in mine:
            if vary(s) != {dim}:
                ctx.graph.fix(s)
        for s in mine[1:]:
            ctx.graph.union(mine[0], s)
        n = t.shape[dim]
        along.append(mine[0].reshape(-1) if mine else torch.zeros(n, dtype=torch.int64))
        rest = tuple(s for s in slots if s.shape[dim] == 1)
        shape = tuple(1 if d == dim else n for d, n in enumerate(t.shape))
        others.append((shape, rest))
    shape = tuple(1 if d == dim else n for d, n in enumerate(out.shape))
    merged = couple(ctx.graph, others, shape)
    joined = torch.cat(along)
    view = [1] * ndim
    view[dim] = joined.numel()
    slot = compress(joined.reshape(view))
    ctx.set_slots(out, (*merged, slot) if slot is not None and bool(joined.any()) else merged)


def stack_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``stack``: inputs are coupled elementwise and the new dimension holds no units."""
    parts = [t for t in args[0] if isinstance(t, Tensor)]
    dim = arg(args, kwargs, 1, "dim", 0) % out.dim()
    merged = couple(ctx.graph, [item(ctx, t) for t in parts], tuple(parts[0].shape))
    ctx.set_slots(out, tuple(s.unsqueeze(dim) for s in merged))


def pad_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Constant padding: padded positions of a labelled dimension hold no units (atom 0)."""
    x, pad = args[0], list(args[1])
    slots = []
    for s in ctx.slots(x):
        own = list(pad)
        for k in range(len(pad) // 2):
            if s.shape[s.dim() - 1 - k] == 1:
                own[2 * k] = own[2 * k + 1] = 0
        slots.append(torch.ops.aten.constant_pad_nd.default(s, own, 0))
    ctx.set_slots(out, compress_all(slots))


def per_channel(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Pooling, upsampling, spatial padding: channels (dim 1) pass through, spatial units are
    fixed."""
    x = args[0]
    kept = []
    for s in ctx.slots(x):
        if vary(s) - {0, 1}:
            ctx.graph.fix(s)
        else:
            kept.append(s)
    target = first_tensor(out)
    ctx.set_slots(target, tuple(s.reshape(s.shape[:2] + (1,) * (target.dim() - 2)) for s in kept))


def _reduction(how: ReduceKind, dims_at: int, keep_at: int, all_default: bool = True) -> Rule:
    def rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
        x = args[0]
        dims = arg(args, kwargs, dims_at, "dim", None) if dims_at >= 0 else None
        if dims is None or (isinstance(dims, (list, tuple)) and not dims and all_default):
            dims = list(range(x.dim()))
        dims = [dims] if isinstance(dims, int) else list(dims)
        keepdim = bool(arg(args, kwargs, keep_at, "keepdim", False)) if keep_at >= 0 else False
        slots = reduce(ctx.graph, ctx.slots(x), dims, how, keepdim)
        ctx.set_slots(first_tensor(out), slots)

    rule.__doc__ = f"Reduction over the given dims ({how})."
    return rule


def scan(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Ops that mix all positions along ``dim`` but keep the shape (softmax, cumsum, sort):
    units along ``dim`` are fixed, the others pass through."""
    x = args[0]
    _fix_along(ctx, x, arg(args, kwargs, 1, "dim", -1))
    ctx.set_slots(first_tensor(out), ctx.slots(x))


# --- contractions -----------------------------------------------------------------------------


def mm_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``mm``, ``bmm``, ``addmm``, ``baddbmm``: the contracted dimension is coupled between the
    operands; the output has the row units of ``a`` and the column units of ``b``."""
    from prunekit.graph.couple import contract

    bias = args[0] if str(ctx.func).startswith(("aten.addmm", "aten.baddbmm")) else None
    a, b = (args[1], args[2]) if bias is not None else (args[0], args[1])
    if a.dim() == 2:
        n, k = a.shape
        frame: tuple[int, ...] = (n, k, b.shape[1])
        slots = contract(ctx.graph, item(ctx, a), item(ctx, b), (0, 1), (1, 2), frame, (1,))
    else:
        bt, n, k = a.shape
        frame = (bt, n, k, b.shape[2])
        slots = contract(ctx.graph, item(ctx, a), item(ctx, b), (0, 1, 2), (0, 2, 3), frame, (2,))
    if bias is not None:
        slots = couple(ctx.graph, [(tuple(out.shape), slots), item(ctx, bias)], tuple(out.shape))
    ctx.set_slots(out, slots)


def sdpa_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Fused scaled-dot-product attention ``softmax(q k^T + mask) v`` on ``[..., L, E]`` inputs."""
    from prunekit.graph.couple import contract

    q, k, v = args[0], args[1], args[2]
    *batch, length, e = q.shape
    s_len, ev = k.shape[-2], v.shape[-1]
    nb = len(batch)
    bdims = tuple(range(nb))
    frame = (*batch, length, s_len, e)
    scores = contract(
        ctx.graph,
        item(ctx, q),
        item(ctx, k),
        (*bdims, nb, nb + 2),
        (*bdims, nb + 1, nb + 2),
        frame,
        (nb + 2,),
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
        item(ctx, v),
        (*bdims, nb, nb + 1),
        (*bdims, nb + 1, nb + 2),
        frame,
        (nb + 1,),
    )
    ctx.set_slots(first_tensor(out), slots)


OP_RULES: Registry[Rule] = Registry("structural op rule")
"""ATen op (``"aten.add.Tensor"``, or the packet ``"aten.add"`` for every overload) -> rule."""

_TABLE: dict[Rule, tuple[str, ...]] = {
    passthrough: (
        "aten._to_copy",
        "aten.clone",
        "aten.alias",
        "aten.detach",
        "aten.lift_fresh",
        "aten.lift_fresh_copy",
        "aten.contiguous",
        "aten.hardswish",
        "aten.hardswish_",
        "aten.native_dropout",
        "aten.log_sigmoid_forward",
        "aten.bernoulli_",
        "aten.normal_",
        "aten.uniform_",
        "aten.fill_",
        "aten.zero_",
        "aten.masked_fill_",
        "aten.dropout",
    ),
    copy_into: ("aten.copy_",),
    fresh: (
        "aten.empty_like",
        "aten.zeros_like",
        "aten.ones_like",
        "aten.full_like",
        "aten.rand_like",
        "aten.randn_like",
        "aten.new_zeros",
        "aten.new_ones",
        "aten.new_empty",
        "aten.new_full",
        "aten.sym_size",
        "aten._local_scalar_dense",
        "aten.sym_numel",
        "aten.sym_stride",
        "aten.sym_storage_offset",
        "aten.is_nonzero",
        "aten.equal",
    ),
    movement: (
        "aten.expand",
        "aten.permute",
        "aten.transpose",
        "aten.t",
        "aten.unsqueeze",
        "aten.squeeze",
        "aten.flip",
        "aten.roll",
        "aten.repeat",
        "aten.movedim",
        "aten.expand_as",
    ),
    channel_shuffle_rule: ("aten.channel_shuffle", "aten.native_channel_shuffle"),
    pixel_shuffle_rule: ("aten.pixel_shuffle",),
    view: ("aten.view", "aten._unsafe_view", "aten.reshape", "aten._reshape_alias"),
    slice_rule: ("aten.slice",),
    select_rule: ("aten.select",),
    gather_rule: ("aten.index_select", "aten.gather"),
    index_rule: ("aten.index",),
    split_rule: ("aten.split", "aten.split_with_sizes", "aten.unbind", "aten.chunk"),
    cat_rule: ("aten.cat",),
    stack_rule: ("aten.stack",),
    pad_rule: ("aten.constant_pad_nd",),
    per_channel: tuple(
        f"aten.{name}"
        for name in (
            "max_pool1d",
            "max_pool2d",
            "max_pool3d",
            "max_pool2d_with_indices",
            "max_pool3d_with_indices",
            "avg_pool1d",
            "avg_pool2d",
            "avg_pool3d",
            "_adaptive_avg_pool2d",
            "_adaptive_avg_pool3d",
            "adaptive_avg_pool1d",
            "adaptive_max_pool1d",
            "adaptive_max_pool2d",
            "adaptive_max_pool3d",
            "upsample_nearest1d",
            "upsample_nearest2d",
            "upsample_nearest3d",
            "_upsample_nearest_exact1d",
            "_upsample_nearest_exact2d",
            "_upsample_nearest_exact3d",
            "upsample_linear1d",
            "upsample_bilinear2d",
            "upsample_bicubic2d",
            "upsample_trilinear3d",
            "_upsample_bilinear2d_aa",
            "reflection_pad1d",
            "reflection_pad2d",
            "reflection_pad3d",
            "replication_pad1d",
            "replication_pad2d",
            "replication_pad3d",
        )
    ),
    _reduction("sum", 1, 2): ("aten.sum",),
    _reduction("sum", 2, 3): ("aten.linalg_vector_norm",),
    _reduction("mean", 1, 2): ("aten.mean",),
    _reduction("mean", 1, 3): ("aten.var", "aten.std", "aten.var_mean", "aten.std_mean"),
    _reduction("fixed", 1, 2): (
        "aten.amax",
        "aten.amin",
        "aten.max",
        "aten.min",
        "aten.argmax",
        "aten.argmin",
        "aten.logsumexp",
        "aten.prod",
        "aten.any",
        "aten.all",
    ),
    scan: (
        "aten._softmax",
        "aten._log_softmax",
        "aten.cumsum",
        "aten.cumprod",
        "aten.sort",
        "aten.topk",
        "aten.softmax",
        "aten.log_softmax",
    ),
    mm_rule: ("aten.mm", "aten.bmm", "aten.addmm", "aten.baddbmm"),
    sdpa_rule: (
        "aten._scaled_dot_product_flash_attention_for_cpu",
        "aten._scaled_dot_product_flash_attention",
        "aten._scaled_dot_product_efficient_attention",
    ),
}
for _rule, _names in _TABLE.items():
    for _name in _names:
        OP_RULES.register(_name, _rule)
for _name in ("aten.max.other", "aten.min.other"):
    OP_RULES.register(_name, pointwise)


def rule_for_op(func: Any) -> Rule | None:
    """The rule of an ATen overload: by overload name, then by packet name, then by tag."""
    name = str(func)
    if name in OP_RULES:
        return OP_RULES.get(name)
    packet = name.rsplit(".", 1)[0] if name.count(".") >= 2 else name
    if packet in OP_RULES:
        return OP_RULES.get(packet)
    if torch.Tag.pointwise in getattr(func, "tags", ()):
        return pointwise
    return None
