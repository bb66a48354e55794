"""Read and write a masked model's *original* (unmasked) tensors by plain name.

A masked ``fc1.weight`` stores its trainable value as ``fc1.parametrizations.weight.original``;
methods that rewind, re-initialise or regrow weights address it as ``fc1.weight`` here, so
snapshots taken before and after masking have the same keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.masks.parametrize import Mask

_ORIGINAL = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.original$")


def _plain_name(name: str) -> str | None:
    """``a.parametrizations.w.original`` -> ``a.w``; other parametrization tensors -> None."""
    match = _ORIGINAL.match(name)
    if match:
        prefix, attr = match.groups()
        return f"{prefix}.{attr}" if prefix else attr
    if name.startswith("parametrizations.") or ".parametrizations." in name:
        return None
    return name


def original_state(model: nn.Module, *, buffers: bool = True) -> dict[str, Tensor]:
    """A detached copy of every parameter's original value (and buffer), by plain name."""
    named: list[tuple[str, Tensor]] = list(model.named_parameters())
    if buffers:
        named += list(model.named_buffers())
    state = {}
    for name, value in named:
        plain = _plain_name(name)
        if plain is not None:
            state[plain] = value.detach().clone()
    return state


def original_tensor(model: nn.Module, name: str) -> Tensor:
    """The stored tensor behind ``name``: the original if it is parametrised, else itself."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    if parametrize.is_parametrized(module, attr):
        container = getattr(module, "parametrizations")  # noqa: B009 (added by torch)
        original = container[attr].original
        assert isinstance(original, Tensor)
        return original
    value = getattr(module, attr, None)
    if not isinstance(value, Tensor):
        raise ConfigError(f"model has no tensor {name!r}")
    return value


@torch.no_grad()
def load_originals(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Copy ``state`` (plain name -> value) into the model's original tensors, masks untouched."""
    targets = {name: original_tensor(model, name) for name in state}
    for name, target in targets.items():
        if target.shape != state[name].shape:
            raise ConfigError(
                f"cannot load {name!r}: shape {tuple(state[name].shape)} vs {tuple(target.shape)}"
            )
    for name, target in targets.items():
        target.copy_(state[name])


def mask_buffer(model: nn.Module, name: str) -> Tensor:
    """The live 0/1 mask buffer of tensor ``name`` (to rewrite a mask instead of AND-ing)."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    if parametrize.is_parametrized(module, attr):
        for p in getattr(module, "parametrizations")[attr]:  # noqa: B009
            if isinstance(p, Mask):
                return p.mask
    raise ConfigError(f"tensor {name!r} has no mask; apply one first (prunekit.apply_masks)")
