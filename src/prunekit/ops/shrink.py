"""How surgery updates a layer's width attributes after its tensors were sliced.

Surgery slices parameters and buffers; a *shrink rule* then re-derives the attributes that record
widths (``in_features``, ``out_channels``, ``groups``, ``num_features``, ``normalized_shape``, ...)
from the new tensor shapes, so that the layer's ``forward`` and ``repr`` agree with its tensors.
A module type without a rule keeps its attributes: that is right for modules that read widths
from their tensors, and surgery's verification catches the rest. Register a rule for a custom
layer with ``SHRINK_RULES.register("mylayer", ShrinkRule((MyLayer,), update))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunekit.adapters import module_facts
from prunekit.ops.mha import PrunableMultiheadAttention
from prunekit.registry import Registry

Changes = dict[str, tuple[Any, Any]]
"""Attribute name -> (value before, value after)."""


@dataclass(frozen=True)
class ShrinkRule:
    """Re-derives the width attributes of ``types`` from their (already sliced) tensors."""

    types: tuple[type[nn.Module], ...]
    update: Callable[[nn.Module], Changes]


def set_attributes(target: Any, values: dict[str, Any]) -> Changes:
    """Set the attributes that change; return them as ``{attr: (before, after)}``."""
    changes: Changes = {}
    module = target
    for attr, new in values.items():
        old = getattr(module, attr)
        if old != new:
            setattr(module, attr, new)
            changes[attr] = (old, new)
    return changes


def _conv(module: nn.Module) -> Changes:
    assert isinstance(module, nn.modules.conv._ConvNd)
    w = module.weight
    if module.transposed:
        return set_attributes(
            module, {"in_channels": w.shape[0], "out_channels": w.shape[1] * module.groups}
        )
    out_channels = w.shape[0]
    groups = module.groups * out_channels // module.out_channels if module.groups > 1 else 1
    return set_attributes(
        module,
        {"out_channels": out_channels, "groups": groups, "in_channels": w.shape[1] * groups},
    )


def _linear(module: nn.Module) -> Changes:
    assert isinstance(module, nn.Linear)
    return set_attributes(
        module, {"in_features": module.weight.shape[1], "out_features": module.weight.shape[0]}
    )


def _bilinear(module: nn.Module) -> Changes:
    assert isinstance(module, nn.Bilinear)
    w = module.weight
    return set_attributes(
        module, {"out_features": w.shape[0], "in1_features": w.shape[1], "in2_features": w.shape[2]}
    )


def _batch_norm(module: nn.Module) -> Changes:
    assert isinstance(module, nn.modules.batchnorm._NormBase)
    ref = module.weight if module.weight is not None else module.running_mean
    if ref is None:
        return {}
    return set_attributes(module, {"num_features": ref.shape[0]})


def _layer_norm(module: nn.Module) -> Changes:
    assert isinstance(module, nn.LayerNorm)
    if module.weight is None:
        return {}
    return set_attributes(module, {"normalized_shape": tuple(module.weight.shape)})


def _rms_norm(module: nn.Module) -> Changes:
    assert isinstance(module, nn.RMSNorm)
    if module.weight is None:
        return {}
    return set_attributes(module, {"normalized_shape": tuple(module.weight.shape)})


def _group_norm(module: nn.Module) -> Changes:
    assert isinstance(module, nn.GroupNorm)
    if module.weight is None:
        return {}
    channels = module.weight.shape[0]
    per_group = module.num_channels // module.num_groups
    groups = 1 if module.num_groups == 1 else channels // per_group
    return set_attributes(module, {"num_channels": channels, "num_groups": groups})


def _prelu(module: nn.Module) -> Changes:
    assert isinstance(module, nn.PReLU)
    return set_attributes(module, {"num_parameters": module.weight.numel()})


def _embedding(module: nn.Module) -> Changes:
    assert isinstance(module, nn.Embedding)
    w = module.weight
    return set_attributes(module, {"num_embeddings": w.shape[0], "embedding_dim": w.shape[1]})


def _multihead_attention(module: nn.Module) -> Changes:
    """Heads follow the (whole-head) width of the projections; input widths follow theirs."""
    assert isinstance(module, PrunableMultiheadAttention)
    return set_attributes(
        module,
        {
            "num_heads": module.q_proj.weight.shape[0] // module.head_dim,
            "embed_dim": module.q_proj.weight.shape[1],
            "kdim": module.k_proj.weight.shape[1],
            "vdim": module.v_proj.weight.shape[1],
        },
    )


SHRINK_RULES: Registry[ShrinkRule] = Registry(
    "shrink rule",
    {
        "conv": ShrinkRule((nn.modules.conv._ConvNd,), _conv),
        "linear": ShrinkRule((nn.Linear,), _linear),
        "bilinear": ShrinkRule((nn.Bilinear,), _bilinear),
        "batch_norm": ShrinkRule((nn.modules.batchnorm._NormBase,), _batch_norm),
        "layer_norm": ShrinkRule((nn.LayerNorm,), _layer_norm),
        "rms_norm": ShrinkRule((nn.RMSNorm,), _rms_norm),
        "group_norm": ShrinkRule((nn.GroupNorm,), _group_norm),
        "prelu": ShrinkRule((nn.PReLU,), _prelu),
        "embedding": ShrinkRule((nn.Embedding,), _embedding),
        "multihead_attention": ShrinkRule((PrunableMultiheadAttention,), _multihead_attention),
    },
)


def shrink_rule_for(module: nn.Module) -> ShrinkRule | None:
    """The registered rule for ``module``'s type, else the width update its model family adapter
    declares (Hugging Face and timm attention, GPT-2's ``Conv1D``; :mod:`prunekit.adapters`)."""
    for name in SHRINK_RULES.names():
        rule = SHRINK_RULES.get(name)
        if isinstance(module, rule.types):
            return rule
    facts = module_facts(module)
    if facts is None:
        return None
    widths = facts.widths
    return ShrinkRule((type(module),), lambda m: set_attributes(m, widths(m)))
