"""Structural rules of the ATen ops that hold layer weights: convolution, normalisations,
embedding, PReLU. Registered into :data:`prunekit.graph.structural.OP_RULES`.

Each rule couples the channel atoms of its input with the weight dimension that reads them and
gives the output the atoms of the weight dimension that writes it, so a Conv -> BN -> ReLU -> Conv
chain becomes one unit per channel spanning the first conv's rows, its bias, the BN entries and
the second conv's columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from prunekit.graph.atoms import left_pad, vary
from prunekit.graph.couple import couple, place, vector
from prunekit.graph.structural.context import Rule, RuleContext, arg, first_tensor, item


def channel_vector(ctx: RuleContext, t: Tensor, dim: int) -> Tensor | None:
    """The channel atoms of an activation along ``dim``; units along any other dimension
    (spatial positions, tokens) are fixed, since these layers mix them."""
    dim = dim % t.dim()
    for s in ctx.slots(t):
        if vary(s) - {dim}:
            ctx.graph.fix(s)
    return vector(ctx.graph, tuple(t.shape), ctx.slots(t), dim)


def param_vector(ctx: RuleContext, t: Tensor | None, dim: int) -> Tensor | None:
    if t is None:
        return None
    return vector(ctx.graph, tuple(t.shape), ctx.slots(t), dim)


def link(ctx: RuleContext, a: Tensor | None, a_size: int, b: Tensor | None, b_size: int) -> None:
    """Couple two atom vectors of one dimension; if one side has no units (an unlabelled
    dimension of size > 1), the other side's units are fixed."""
    if a is not None and b is not None:
        ctx.graph.union(a, b)
    elif a is not None and b_size > 1:
        ctx.graph.fix(a)
    elif b is not None and a_size > 1:
        ctx.graph.fix(b)


def _fix_dims(ctx: RuleContext, t: Tensor, dims: set[int]) -> None:
    for s in ctx.slots(t):
        if vary(s) & dims:
            ctx.graph.fix(s)


def convolution(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``aten.convolution``: input channels <-> weight dim 1 (dim 0 if transposed), output
    channels <-> weight dim 0 (dim 1 if transposed) and bias. A grouped convolution keeps its
    groups equal, so a unit is a whole group: its input channels and its output channels
    (for a depthwise conv, channel ``c`` in and channel ``c`` out)."""
    x, w, bias = args[0], args[1], args[2]
    transposed = bool(arg(args, kwargs, 6, "transposed", False))
    groups = int(arg(args, kwargs, 8, "groups", 1))
    cdim = 0 if x.dim() == w.dim() - 1 else 1
    _fix_dims(ctx, w, set(range(2, w.dim())))
    xin = channel_vector(ctx, x, cdim)
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    w_in, w_out = param_vector(ctx, w, in_dim), param_vector(ctx, w, out_dim)
    if xin is not None and w_in is not None and ctx.graph.standardised_among(w_in):
        ctx.graph.mark_inexact(xin)  # its weights are standardised over these inputs
    if groups == 1:
        link(ctx, xin, x.shape[cdim], w_in, w.shape[in_dim])
    elif transposed:
        for v in (xin, w_in, w_out):
            if v is not None:
                ctx.graph.fix(v)
        w_out = None
    elif not _groups_follow_width(ctx, groups):
        w_out = _constant_groups(ctx, groups, xin, w_in, w_out)
    else:
        if w_in is not None:
            ctx.graph.fix(w_in)
        if xin is None or w_out is None:
            for v in (xin, w_out):
                if v is not None:
                    ctx.graph.fix(v)
        else:
            per_in = xin.view(groups, -1)
            ctx.graph.union(per_in[:, :1], per_in)
            ctx.graph.union(per_in[:, :1], w_out.view(groups, -1))
    b_out = param_vector(ctx, bias, 0)
    link(ctx, w_out, w.shape[out_dim], b_out, 0 if bias is None else bias.shape[0])
    if w_out is not None:
        ctx.set_slots(out, (place(w_out, out.dim(), cdim),))


def _groups_follow_width(ctx: RuleContext, groups: int) -> bool:
    """True if ``groups`` is the ``groups`` attribute of the convolution module being run, which
    surgery updates with the width; a functional call inside any other module (a blur pool's
    ``F.conv2d(x, filt, groups=self.channels)``) has its ``groups`` written in code."""
    modules = ctx.modules()
    module = modules[-1] if modules else None
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups == groups


def _constant_groups(
    ctx: RuleContext,
    groups: int,
    xin: Tensor | None,
    w_in: Tensor | None,
    w_out: Tensor | None,
) -> Tensor | None:
    """A grouped convolution whose ``groups`` stays what it is: a unit is one position inside
    every group (position ``j`` of each group's inputs with weight column ``j``; position
    ``m`` of each group's outputs with weight row ``m`` of every group), so every group loses
    the same positions. With one position per group (depthwise) nothing can go. Returns the
    output's atoms (``None`` if the output carries no units)."""
    if xin is not None:
        per_in = xin.view(groups, -1)
        ctx.graph.union(per_in[:1], per_in)
        if per_in.shape[1] == 1 or w_in is None:
            ctx.note(f"groups={groups} is written in code and each group has one input")
            ctx.graph.fix(xin)
        else:
            ctx.graph.union(per_in[0], w_in)
    elif w_in is not None:
        ctx.graph.fix(w_in)
    if w_out is None:
        return None
    per_out = w_out.view(groups, -1)
    ctx.graph.union(per_out[:1], per_out)
    if per_out.shape[1] == 1:
        ctx.graph.fix(w_out)
    return w_out


def batch_norm(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """BatchNorm (and InstanceNorm, which runs as a batch norm): per-channel, so exact.

    With batch statistics (``training=True`` while tracing in eval mode: weight
    standardisation, ``F.batch_norm(w.reshape(1, O, -1), None, None, training=True)`` in timm's
    ``StdConv2d`` / ``ScaledStdConv2d``), units along the other dims are the positions the
    statistics run over: removing them changes the statistics, so they are inexact, not fixed
    (:meth:`AtomGraph.mark_standardised`), and pass through to the output."""
    x = args[0]
    cdim = 1 if x.dim() > 1 else 0
    stats = _batch_statistics(ctx, args, kwargs)
    slots = [left_pad(s, x.dim()) for s in ctx.slots(x)]
    others = [s for s in slots if stats and vary(s) and not vary(s) & {cdim}]
    for s in others:
        ctx.graph.mark_standardised(s)
    rest = [s for s in slots if not any(s is o for o in others)]
    for s in rest:
        if vary(s) - {cdim}:
            ctx.graph.fix(s)
    xin = vector(ctx.graph, tuple(x.shape), tuple(rest), cdim)
    for p in args[1:5]:
        if isinstance(p, Tensor):
            link(ctx, xin, x.shape[cdim], param_vector(ctx, p, 0), p.shape[0])
    placed = (place(xin, x.dim(), cdim),) if xin is not None else ()
    ctx.set_slots(first_tensor(out), (*placed, *others))


def _batch_statistics(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """True if this batch norm normalises with the statistics of its input."""
    name = str(ctx.func)
    if name.startswith("aten._native_batch_norm_legit_no_training"):
        return False
    if name.startswith("aten._native_batch_norm_legit.no_stats"):
        return True
    return bool(arg(args, kwargs, 5, "training", False))


def layer_norm(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """LayerNorm normalises over its trailing dims: weights are coupled elementwise, and units
    along those dims are *inexact* (removing them changes the statistics). Without affine
    weights the normalised shape is a fixed number in the module, so those units are fixed."""
    x, shape = args[0], list(args[1])
    w, b = arg(args, kwargs, 2, "weight", None), arg(args, kwargs, 3, "bias", None)
    dims = set(range(x.dim() - len(shape), x.dim()))
    if w is None:
        _fix_dims(ctx, x, dims)
    for s in ctx.slots(x):
        if vary(s) & dims:
            ctx.graph.mark_inexact(s)
    items = [item(ctx, x)] + [item(ctx, p) for p in (w, b) if isinstance(p, Tensor)]
    ctx.set_slots(first_tensor(out), couple(ctx.graph, items, tuple(x.shape)))


def group_norm(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """GroupNorm: a unit is a whole normalisation group (exact: the other groups' statistics do
    not change). With one group it normalises over all channels, like LayerNorm: inexact."""
    x, w, b, groups = args[0], args[1], args[2], int(args[6])
    xin = channel_vector(ctx, x, 1)
    for p in (w, b):
        if isinstance(p, Tensor):
            link(ctx, xin, x.shape[1], param_vector(ctx, p, 0), p.shape[0])
    if xin is None:
        return
    if groups == 1:
        ctx.graph.mark_inexact(xin)
    elif groups < xin.numel():
        per = xin.view(groups, -1)
        ctx.graph.union(per[:, :1], per)
    ctx.set_slots(first_tensor(out), (place(xin, x.dim(), 1),))


def embedding(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """Embedding lookup: the vocabulary is fixed; the output's last dim has the weight's
    columns (so a tied LM head shares them)."""
    w = args[0]
    rows = param_vector(ctx, w, 0)
    if rows is not None:
        ctx.graph.fix(rows)
    cols = param_vector(ctx, w, 1)
    if cols is not None:
        ctx.set_slots(out, (place(cols, out.dim(), -1),))


def prelu(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """PReLU: one slope per channel (dim 1; a 1-d weight is aligned with it) or one shared."""
    x, w = args[0], args[1]
    w_shape, w_slots = tuple(w.shape), ctx.slots(w)
    if w.dim() == 1 and x.dim() > 1:
        view = (1, w.numel()) + (1,) * (x.dim() - 2)
        w_shape, w_slots = view, tuple(s.reshape(view) for s in w_slots)
    ctx.set_slots(out, couple(ctx.graph, [item(ctx, x), (w_shape, w_slots)], tuple(x.shape)))


LAYER_OP_RULES: dict[str, Rule] = {
    "aten.convolution": convolution,
    "aten.native_batch_norm": batch_norm,
    "aten._native_batch_norm_legit": batch_norm,
    "aten._native_batch_norm_legit_no_training": batch_norm,
    "aten.native_layer_norm": layer_norm,
    "aten.native_group_norm": group_norm,
    "aten.embedding": embedding,
    "aten._prelu_kernel": prelu,
}
