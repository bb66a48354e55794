"""The registry of model family adapters and the lookups the rest of prunekit uses."""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.adapters.base import ModelFamily, ModuleFacts
from prunekit.adapters.families import FAMILY_ORDER
from prunekit.adapters.hf import mlp_config
from prunekit.registry import Registry

FAMILIES: Registry[ModelFamily] = Registry("model family", {f.name: f for f in FAMILY_ORDER})


def module_facts(module: nn.Module) -> ModuleFacts | None:
    """What a family adapter says about ``module``'s class, if any knows it."""
    for family in FAMILY_ORDER:
        facts = family.facts_for(module)
        if facts is not None:
            return facts
    return None


def is_attention(module: nn.Module) -> bool:
    """An attention module: ``nn.MultiheadAttention`` or a family's attention class."""
    if isinstance(module, nn.MultiheadAttention):
        return True
    facts = module_facts(module)
    return facts is not None and facts.attention


def attention_classes() -> tuple[str, ...]:
    """Every attention class name the adapters know (for messages and ``prunekit list``)."""
    return tuple(c for family in FAMILY_ORDER for c in family.attention_classes())


def block_paths() -> tuple[str, ...]:
    """Attribute paths of transformer block lists, in the order they are tried."""
    return tuple(path for family in FAMILY_ORDER for path in family.block_paths)


def fixed_widths(module: nn.Module) -> list[tuple[str, int]]:
    """``(tensor path, dim)`` pairs of ``module`` whose size is written in its code:
    ``nn.MultiheadAttention``'s projections, and the families' fixed-width attention classes."""
    if isinstance(module, nn.MultiheadAttention):
        names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
        return [(name, 0) for name in names]
    cls = type(module)
    qualname = f"{cls.__module__}.{cls.__qualname__}"
    for family in FAMILY_ORDER:
        for fixed in family.fixed_widths:
            if fixed.qualname == qualname:
                return [(name, 0) for name in fixed.tensors]
    return []


def config_widths(model: nn.Module) -> dict[str, list[int]]:
    """Config field -> the value every attention / feed-forward module of ``model`` implies
    (one entry per module, so callers can tell whether the layers agree)."""
    found: dict[str, list[int]] = {}
    module: Any
    for module in model.modules():
        facts = module_facts(module)
        values = facts.config(module) if facts is not None else mlp_config(module)
        for key, value in values.items():
            found.setdefault(key, []).append(value)
    return found
