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


def slot_names(model: nn.Module) -> list[str]:
    """One name per (module, attribute) holding a parameter or buffer.

    A module registered under two names (``self.b = self.a``) is one object: swapping its
    tensors under both names would record the first stand-in as the "original" of the second
    name and restore it, leaving the user's model on meta tensors. Tied tensors of different
    modules (``b.weight = a.weight``) are two attributes and keep a name each.
    """
    names: list[str] = []
    for prefix, module in model.named_modules():  # each module object once
        for local in (*module._parameters, *module._buffers):
            value = module._parameters.get(local, module._buffers.get(local))
            if value is not None:
                names.append(f"{prefix}.{local}" if prefix else local)
    return names


def call_with(model: nn.Module, state: Mapping[str, Tensor], example_inputs: Any) -> Any:
    """Run ``model`` on ``example_inputs`` with ``state``'s tensors standing in for its own, by
    name; every original tensor object is put back afterwards, even when the call fails."""
    args, kwargs = as_args(example_inputs)
    unique = {n: state[n] for n in slot_names(model) if n in state}
    saved = _attributes(model)
    try:
        return torch.func.functional_call(
            model, unique, args, kwargs, tie_weights=False, strict=False
        )
    finally:
        _restore(saved)


_Saved = list[tuple[nn.Module, str, str, Any]]


def _attributes(model: nn.Module) -> _Saved:
    saved: _Saved = []
    for module in model.modules():
        saved.extend((module, "_parameters", k, v) for k, v in module._parameters.items())
        saved.extend((module, "_buffers", k, v) for k, v in module._buffers.items())
    return saved


def _restore(saved: _Saved) -> None:
    for module, where, key, value in saved:
        table = getattr(module, where)
        if table.get(key) is not value:
            table[key] = value


def to_meta(tree: Any) -> Any:
    return pytree.tree_map(lambda v: v.to("meta") if isinstance(v, Tensor) else v, tree)
