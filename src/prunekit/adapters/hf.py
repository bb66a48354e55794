"""Facts shared by the Hugging Face transformers families: head sizes, rotary embeddings,
MLP widths in the config, causal language models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

HEAD_DIM_ATTRIBUTES: tuple[str, ...] = ("head_dim", "attention_head_size")
"""Module attributes that give the size of one attention head."""

CONSTANT_MODULE_SUFFIXES: tuple[str, ...] = ("RotaryEmbedding",)
"""Module classes whose name ends with one of these only make constant tables."""

MLP_SUFFIXES: tuple[str, ...] = ("MLP", "Intermediate")
"""Class-name endings of feed-forward modules (``LlamaMLP``, ``GPT2MLP``, ``BertIntermediate``)."""

MLP_WIDTH_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("gate_proj", "intermediate_size", 0),
    ("up_proj", "intermediate_size", 0),
    ("dense", "intermediate_size", 0),
    ("c_fc", "n_inner", 1),
)
"""``(projection, config field, weight dim)``: the first projection a feed-forward module has
gives its inner width (``c_fc`` is GPT-2's ``Conv1D``, weight ``[nx, nf]``)."""

HIDDEN_SIZE_KEYS: tuple[str, ...] = ("hidden_size", "n_embd", "d_model")
"""Config fields naming the residual width; the first one present is the one."""

CAUSAL_LM_SUFFIX = "ForCausalLM"
"""Class-name (and ``config.architectures``) ending of Hugging Face causal language models."""


def makes_constants(module: nn.Module) -> bool:
    """True for modules whose outputs are constant tables (rotary embeddings)."""
    return type(module).__name__.endswith(CONSTANT_MODULE_SUFFIXES)


def declared_head_dim(module: nn.Module) -> int | None:
    """The head size ``module`` declares in one of :data:`HEAD_DIM_ATTRIBUTES`, if any."""
    for attr in HEAD_DIM_ATTRIBUTES:
        value = module.__dict__.get(attr)
        if isinstance(value, int) and value > 1:
            return value
    return None


def mlp_config(module: Any) -> dict[str, int]:
    """The config field a feed-forward module's inner width implies (``{}`` for others)."""
    if not type(module).__name__.endswith(MLP_SUFFIXES):
        return {}
    for proj, key, dim in MLP_WIDTH_FIELDS:
        weight = getattr(getattr(module, proj, None), "weight", None)
        if weight is not None:
            return {key: int(weight.shape[dim])}
    return {}


def is_causal_architecture(names: Iterable[str]) -> bool:
    """True if any class name (e.g. ``config.architectures``) is a causal language model."""
    return any(name.endswith(CAUSAL_LM_SUFFIX) for name in names)


def is_causal_lm(model: nn.Module) -> bool:
    """A Hugging Face causal language model (``...ForCausalLM``)."""
    return is_causal_architecture([type(model).__name__])
