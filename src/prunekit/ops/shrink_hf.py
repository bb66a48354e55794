"""The model-level Hugging Face config update after surgery.

After surgery removed whole heads or MLP neurons, an attention module's head count and fused
split sizes follow its (sliced) projections (the model family adapters in
:mod:`prunekit.adapters` say how), and the model's ``config`` should describe the new widths.
A config has one value per field for every layer, so a field is updated only when
every layer agrees (``scope="layer"`` pruning gives that); otherwise it keeps the original value
and the per-layer widths live in the modules and in the plan (which is what
:func:`prunekit.surgery.rebuild` replays).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from torch import nn

from prunekit.adapters import HIDDEN_SIZE_KEYS, config_widths
from prunekit.ops.shrink import Changes, set_attributes


def _uniform(values: list[int]) -> int | None:
    counts = Counter(values)
    return values[0] if len(counts) == 1 else None


def update_hf_config(model: nn.Module) -> Changes:
    """Set ``model.config`` width fields that every layer agrees on after surgery."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return {}
    found = config_widths(model)
    _residual_width(model, config, found)
    values = {}
    for key, widths in found.items():
        value = _uniform(widths)
        if value is not None and hasattr(config, key) and key in config.to_dict():
            values[key] = value
    return set_attributes(config, _valid_values(config, values))


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
