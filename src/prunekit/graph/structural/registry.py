"""The registry of structural op rules: ATen overload or packet name -> rule."""

from __future__ import annotations

from typing import Any

import torch

from prunekit.graph.structural import layers
from prunekit.graph.structural.context import Rule
from prunekit.graph.structural.contraction import mm_rule, sdpa_rule
from prunekit.graph.structural.elementwise import (
    copy_into,
    fresh,
    passthrough,
    pointwise,
    reduction,
    scan,
    topk_rule,
)
from prunekit.graph.structural.indexing import (
    cat_rule,
    gather_rule,
    index_rule,
    keep_whole,
    select_rule,
    slice_rule,
    split_rule,
    stack_rule,
)
from prunekit.graph.structural.movement import (
    channel_shuffle_rule,
    expand,
    layout,
    movement,
    pad_rule,
    per_channel,
    pixel_shuffle_rule,
    restride,
    roll_rule,
    squeeze,
    view,
)
from prunekit.registry import Registry

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
        "prim.device",
        "prim.layout",
        "aten.is_same_size",
    ),
    movement: ("aten.repeat",),
    squeeze: ("aten.squeeze",),
    restride: ("aten.as_strided", "aten.as_strided_"),
    layout: (
        "aten.permute",
        "aten.transpose",
        "aten.t",
        "aten.unsqueeze",
        "aten.flip",
        "aten.movedim",
    ),
    roll_rule: ("aten.roll",),
    pointwise: ("aten.masked_fill", "aten.masked_fill_"),
    topk_rule: ("aten.topk",),
    keep_whole: (
        "aten.scatter",
        "aten.scatter_",
        "aten.scatter_add",
        "aten.scatter_add_",
        "aten.scatter_reduce",
        "aten.scatter_reduce_",
        "aten.index_put",
        "aten.index_put_",
        "aten._index_put_impl_",
        "aten.index_add",
        "aten.index_add_",
        "aten.index_copy",
        "aten.index_copy_",
        "aten.index_fill",
        "aten.index_fill_",
        "aten.masked_scatter",
        "aten.masked_scatter_",
    ),
    expand: ("aten.expand", "aten.expand_as"),
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
    reduction("sum", 1, 2): ("aten.sum",),
    reduction("sum", 2, 3): ("aten.linalg_vector_norm",),
    reduction("mean", 1, 2): ("aten.mean",),
    reduction("mean", 1, 3): ("aten.var", "aten.std", "aten.var_mean", "aten.std_mean"),
    reduction("fixed", 1, 2): (
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
        "aten.median",
        "aten.nanmedian",
        "aten.kthvalue",
        "aten.mode",
    ),
    scan: (
        "aten._softmax",
        "aten._safe_softmax",
        "aten._log_softmax",
        "aten.cumsum",
        "aten.cumprod",
        "aten.sort",
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
for _name, _rule in layers.LAYER_OP_RULES.items():
    OP_RULES.register(_name, _rule)


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
