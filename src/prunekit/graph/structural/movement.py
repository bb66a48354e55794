"""Rules of pure data movement: the op is run on the slot tensors themselves, so the index
mapping through view, permute, expand, channel / pixel shuffle and padding is exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from prunekit.graph.atoms import compress, compress_all, left_pad, vary
from prunekit.graph.structural.attention import head_dim_of, splits_heads
from prunekit.graph.structural.context import RuleContext, arg, first_tensor, run_on_slots


def movement(
    ctx: RuleContext,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    out: Any,
    along: int | None = None,
) -> None:
    """Pure data movement of argument 0 (slice, split, repeat, ...): the op is run on the slots
    themselves, so the index mapping is exact. An op that acts on one dimension only (``along``)
    sees the slot expanded along that dimension alone; otherwise it is expanded to the full
    shape."""
    x = args[0]
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    results: list[list[Tensor]] = [[] for _ in outs]
    for s in ctx.slots(x):
        if along is None:
            s = s.expand(x.shape).contiguous()
        else:
            s = left_pad(s, x.dim())
            shape = list(s.shape)
            shape[along % x.dim()] = x.shape[along % x.dim()]
            s = s.expand(shape).contiguous()
        for k, m in enumerate(run_on_slots(ctx, args, kwargs, s)):
            results[k].append(m)
    for o, slots in zip(outs, results, strict=True):
        if isinstance(o, Tensor):
            ctx.set_slots(o, compress_all(slots))


def layout(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Ops that move whole dimensions (permute, transpose, unsqueeze, flip, roll, movedim): a
    dimension along which a slot is constant stays constant, so the op runs on the slot as it
    is, without expanding it to the tensor's shape first (much cheaper than :func:`movement`)."""
    x = args[0]
    moved = [run_on_slots(ctx, args, kwargs, left_pad(s, x.dim()))[0] for s in ctx.slots(x)]
    ctx.set_slots(first_tensor(out), compress_all(moved))


def roll_rule(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``torch.roll(x, s, d)``: a cyclic shift by a number written in code. For ``0 < s < n``
    the last ``s`` positions wrap to the front; removing any other position leaves the same
    ones wrapping, so the shift maps units exactly if those ``s`` are kept (for ``-n < s < 0``,
    the first ``-s``). A shift of ``n`` or more, or a roll of the flattened tensor, keeps every
    unit of the rolled dims."""
    x = args[0]
    shifts = list(arg(args, kwargs, 1, "shifts", []))
    dims = list(arg(args, kwargs, 2, "dims", []))
    slots = [left_pad(s, x.dim()) for s in ctx.slots(x)]
    if not dims:
        for s in slots:
            ctx.graph.fix(s)
    for shift, d in zip(shifts, dims, strict=False):
        n = x.shape[d]
        if shift == 0:
            continue
        for s in slots:
            if s.shape[d] <= 1:
                continue
            ctx.note(f"roll by {shift} along dim {d} (size {n}) keeps the positions that wrap")
            if abs(shift) >= n:
                ctx.graph.fix(s)
            else:
                ctx.graph.fix(
                    s.narrow(d, n - shift, shift) if shift > 0 else s.narrow(d, 0, -shift)
                )
    layout(ctx, args, kwargs, out)


def restride(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``as_strided`` to the tensor's own shape (kernels re-stride outputs to a memory format):
    the elements stay where they are. Any other ``as_strided`` cannot be mapped."""
    x, size = args[0], tuple(arg(args, kwargs, 1, "size", ()))
    if size != tuple(x.shape):
        from prunekit.errors import UnsupportedLayerError, exclude_hint

        raise UnsupportedLayerError(
            f"structural tracing cannot map units through {ctx.func} to shape {size} in module "
            f"{ctx.where()!r} (an arbitrary strided view); {exclude_hint(ctx.where())}"
        )
    ctx.set_slots(first_tensor(out), ctx.slots(x))


def squeeze(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``squeeze``: drops the dims of size 1 of the tensor (a slot is size 1 there too)."""
    x = args[0]
    dims = arg(args, kwargs, 1, "dim", None)
    if dims is None:
        dims = range(x.dim())
    elif isinstance(dims, int):
        dims = [dims]
    gone = sorted({d % x.dim() for d in dims if x.shape[d] == 1}, reverse=True) if x.dim() else []
    slots = []
    for s in ctx.slots(x):
        s = left_pad(s, x.dim())
        for d in gone:
            s = s.squeeze(d)
        slots.append(s)
    ctx.set_slots(out, compress_all(slots))


def expand(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``expand`` only adds leading dimensions or repeats size-1 ones, which slots already
    broadcast over: the slots stay as they are."""
    ctx.set_slots(out, tuple(left_pad(s, out.dim()) for s in ctx.slots(args[0])))


def view(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Reshape, exact like :func:`movement`. When a labelled dimension is split into several
    (``view(N, g, C // g, H, W)``, ``view(B, T, heads, head_dim)``), only the last factor is
    computed from the shape in typical code; the leading factors are constants or attributes.
    So pruning must keep the leading factors: positions that share the last coordinate are
    coupled (a channel shuffle loses the same position in every group). Inside an attention
    module that declares its head size, a split into ``(heads, head_dim)`` makes whole heads
    the units instead (:mod:`prunekit.graph.structural.attention`)."""
    x = args[0]
    src, dst = tuple(x.shape), tuple(out.shape)
    head_dim = head_dim_of(ctx.modules())
    runs = _reshape_runs(src, dst)
    slots = []
    for s in ctx.slots(x):
        s = left_pad(s, len(src))
        if 0 in src:
            moved = run_on_slots(ctx, args, kwargs, s.expand(src).contiguous())[0]
        else:  # runs along which the slot is constant stay size 1: no need to expand them
            src_r, dst_r = list(src), list(dst)
            for ins, outs in runs:
                if all(s.shape[d] == 1 for d in ins):
                    src_r = [1 if d in ins else n for d, n in enumerate(src_r)]
                    dst_r = [1 if d in outs else n for d, n in enumerate(dst_r)]
            moved = s.expand(src_r).reshape(dst_r)
        for ins, outs in runs:
            if not any(s.shape[d] > 1 for d in ins):
                continue
            factors = [d for d in outs if dst[d] > 1]
            if splits_heads(moved, ins, outs, len(src), head_dim):
                _couple_within_heads(moved, outs, ctx)
            elif len(factors) >= 2:
                _couple_leading_factors(ctx, moved, factors)
        kept = compress(moved)
        if kept is not None:
            slots.append(kept)
    ctx.set_slots(out, tuple(slots))


def _couple_within_heads(moved: Tensor, outs: Sequence[int], ctx: RuleContext) -> None:
    """A split into ``(..., heads, head_dim)`` inside an attention module: a unit is a whole
    head, and factors before the heads (the 3 of a fused ``[q | k | v]``) are kept: head ``h``
    of q, k and v goes together."""
    grid = moved
    for d in reversed(range(moved.dim())):
        if d not in outs:
            grid = grid.select(d, 0)
    heads, head_dim = moved.shape[outs[-2]], moved.shape[outs[-1]]
    grid = grid.reshape(-1, heads, head_dim)
    ctx.graph.union(grid[:, :, :1], grid)
    ctx.graph.union(grid[:1], grid)


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
    return [(ins, [d for d in outs if dst[d] > 1]) for ins, outs in _reshape_runs(src, dst)]


def _reshape_runs(src: Sequence[int], dst: Sequence[int]) -> list[tuple[list[int], list[int]]]:
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
    return groups


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
