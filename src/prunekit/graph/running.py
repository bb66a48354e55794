"""How the traced forward runs: in eval mode, without grad, with attention on its composite
path, and (by default) on ``meta`` stand-ins of the model's tensors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from prunekit.core.modes import composite_attention as composite_attention  # re-exported
from prunekit.core.modes import eval_mode as eval_mode  # re-exported for the tracer


def as_args(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, tuple):
        return example_inputs, {}
    return (example_inputs,), {}


def run_model(model: nn.Module, example_inputs: Any) -> Any:
    """Call ``model`` on ``example_inputs``: a tensor, a tuple of positional arguments, or a
    mapping of keyword arguments."""
    args, kwargs = as_args(example_inputs)
    return model(*args, **kwargs)


def meta_state(model: nn.Module) -> dict[str, Tensor]:
    """A meta stand-in for every parameter and buffer, by name (tied tensors share one)."""
    stand_ins: dict[int, Tensor] = {}
    state: dict[str, Tensor] = {}
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for name, t in named:
        if id(t) not in stand_ins:
            stand_ins[id(t)] = torch.empty_like(t, device="meta")
        state[name] = stand_ins[id(t)]
    return state


def to_meta(tree: Any) -> Any:
    return pytree.tree_map(lambda v: v.to("meta") if isinstance(v, Tensor) else v, tree)
