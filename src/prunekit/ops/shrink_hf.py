"""Shrink rules for Hugging Face transformers (and timm) layers, matched by class name (so
prunekit imports neither), and the model-level config update.

After surgery removed whole heads or MLP neurons, an attention module's head count and fused
split sizes must follow its (sliced) projections, and the model's ``config`` should describe the
new widths. A config has one value per field for every layer, so a field is updated only when
every layer agrees (``scope="layer"`` pruning gives that); otherwise it keeps the original value
and the per-layer widths live in the modules and in the plan (which is what
:func:`prunekit.surgery.rebuild` replays).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

from torch import nn

from prunekit.ops.shrink import Changes, set_attributes


def _conv1d(module: Any) -> Changes:
    """``transformers.pytorch_utils.Conv1D``: weight ``[nx, nf]``."""
    w = module.weight
    return set_attributes(module, {"nx": w.shape[0], "nf": w.shape[1]})


def _heads(width: int, head_dim: int) -> int:
    return width // head_dim if head_dim > 0 else 0


def _gpt2_attention(module: Any) -> Changes:
    """GPT-2: ``c_attn`` projects to ``[q | k | v]``, split by ``split_size``."""
    width = module.c_attn.weight.shape[1] // 3
    return set_attributes(
        module, {"split_size": width, "num_heads": _heads(width, int(module.head_dim))}
    )


def _bert_attention(module: Any) -> Changes:
    """BERT / ViT-style self-attention: ``query`` / ``key`` / ``value`` Linears."""
    width = module.query.weight.shape[0]
    heads = _heads(width, int(module.attention_head_size))
    return set_attributes(module, {"num_attention_heads": heads, "all_head_size": width})


def _llama_attention(module: Any) -> Changes:
    """LLaMA-style attention (``q_proj`` / ``k_proj``): heads follow the projections;
    ``num_key_value_groups`` stays (whole key/value groups are removed)."""
    values = {}
    for attr, proj in (("num_heads", "q_proj"), ("num_key_value_heads", "k_proj")):
        if attr in module.__dict__:
            width = getattr(module, proj).weight.shape[0]
            values[attr] = _heads(width, int(module.head_dim))
    return set_attributes(module, values)


def _timm_attention(module: Any) -> Changes:
    """timm ``Attention`` (ViT, DeiT): fused ``qkv``, ``num_heads`` and ``attn_dim`` attributes."""
    qkv = getattr(module, "qkv", None)
    if not type(module).__module__.startswith("timm.") or qkv is None:
        return {}
    if "num_heads" not in module.__dict__:
        return {}
    width = qkv.weight.shape[0] // 3
    values = {"num_heads": _heads(width, int(module.head_dim))}
    if "attn_dim" in module.__dict__:
        values["attn_dim"] = width
    return set_attributes(module, values)


HF_SHRINK_RULES: dict[str, Callable[[nn.Module], Changes]] = {
    "Conv1D": _conv1d,
    "GPT2Attention": _gpt2_attention,
    "BertSelfAttention": _bert_attention,
    "RobertaSelfAttention": _bert_attention,
    "ViTSelfAttention": _bert_attention,
    "LlamaAttention": _llama_attention,
    "MistralAttention": _llama_attention,
    "Qwen2Attention": _llama_attention,
    "Attention": _timm_attention,
}
"""Class name -> width update (applied after the module's tensors were sliced)."""


def _uniform(values: list[int]) -> int | None:
    counts = Counter(values)
    return values[0] if len(counts) == 1 else None


def update_hf_config(model: nn.Module) -> Changes:
    """Set ``model.config`` width fields that every layer agrees on after surgery."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return {}
    found: dict[str, list[int]] = {}
    module: Any
    for module in model.modules():
        name = type(module).__name__
        if name in ("BertSelfAttention", "RobertaSelfAttention", "ViTSelfAttention"):
            found.setdefault("num_attention_heads", []).append(module.num_attention_heads)
        elif name == "GPT2Attention":
            found.setdefault("n_head", []).append(module.num_heads)
        elif name in ("LlamaAttention", "MistralAttention", "Qwen2Attention"):
            head_dim = int(module.head_dim)
            found.setdefault("num_attention_heads", []).append(
                _heads(module.q_proj.weight.shape[0], head_dim)
            )
            found.setdefault("num_key_value_heads", []).append(
                _heads(module.k_proj.weight.shape[0], head_dim)
            )
        elif name.endswith(("MLP", "Intermediate")):
            for proj in ("gate_proj", "up_proj", "dense", "c_fc"):
                layer = getattr(module, proj, None)
                weight = getattr(layer, "weight", None)
                if weight is not None:
                    width = weight.shape[1] if proj == "c_fc" else weight.shape[0]
                    key = "n_inner" if proj == "c_fc" else "intermediate_size"
                    found.setdefault(key, []).append(int(width))
                    break
    _residual_width(model, config, found)
    values = {}
    for key, widths in found.items():
        value = _uniform(widths)
        if value is not None and hasattr(config, key) and key in config.to_dict():
            values[key] = value
    return set_attributes(config, _valid_values(config, values))


HIDDEN_SIZE_KEYS = ("hidden_size", "n_embd", "d_model")
"""Config fields naming the residual width, the first one present is updated."""


def _residual_width(model: nn.Module, config: Any, found: dict[str, list[int]]) -> None:
    """Record the residual width (the input embedding's) when attention shapes do not derive
    from it: with an explicit ``head_dim`` in the config (LLaMA family) a smaller
    ``hidden_size`` describes the model; where head sizes are ``hidden_size / heads`` (BERT,
    GPT-2) it would not, so the field keeps its value and the width lives in the plan."""
    embeddings = getattr(model, "get_input_embeddings", None)
    fields = config.to_dict()
    if not callable(embeddings) or not fields.get("head_dim"):
        return
    weight = getattr(embeddings(), "weight", None)
    key = next((k for k in HIDDEN_SIZE_KEYS if k in fields), None)
    if weight is not None and key is not None:
        found.setdefault(key, []).append(int(weight.shape[-1]))


def _valid_values(config: Any, values: dict[str, int]) -> dict[str, int]:
    """The values the config's own validation accepts, each tried on a copy.

    Recent transformers configs validate themselves when saved (LLaMA: ``hidden_size`` must be
    a multiple of ``num_attention_heads``); a value that fails keeps the original field, so
    ``save_pretrained`` still works and the new width lives in the modules and the plan."""
    validate = getattr(config, "validate", None)
    if not callable(validate):
        return values
    accepted: dict[str, int] = {}
    for key, value in values.items():
        trial = copy.deepcopy(config)
        for name, kept in {**accepted, key: value}.items():
            setattr(trial, name, kept)
        try:
            trial.validate()
        except Exception:  # huggingface_hub's validation error is a bare Exception
            continue
        accepted[key] = value
    return accepted
