"""A model's state under plain tensor names, seen through prunekit's masks.

``model.state_dict()`` of a masked model holds ``fc1.parametrizations.weight.original`` and the
mask buffer; a save file holds ``fc1.weight`` instead. :func:`read_state` maps one to the other and
refuses what a save file cannot represent (other parametrizations, non-tensor extra state).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError
from prunekit.masks.parametrize import Mask

_PARAMETRIZED = re.compile(r"(?:^|\.)parametrizations\.(?P<attr>[^.]+)\.(?P<rest>.+)$")


@dataclass(frozen=True)
class MaskedSlot:
    """A masked tensor: the module and attribute that hold it and its mask buffers."""

    module: nn.Module
    attr: str
    masks: tuple[Tensor, ...]

    def effective(self) -> Tensor:
        """The value the module computes with (original times mask), detached."""
        with torch.no_grad():
            value = getattr(self.module, self.attr)
        assert isinstance(value, Tensor)
        return value.detach()

    def mask(self) -> Tensor:
        """The product of the mask buffers (one in the usual case)."""
        combined = self.masks[0].detach()
        for extra in self.masks[1:]:
            combined = combined * extra.detach()
        return combined


@dataclass(frozen=True)
class ModelState:
    """Every tensor of a model's state by plain name.

    ``stored`` holds the tensor objects themselves (for a masked tensor: the unmasked original the
    optimizer updates); ``masked`` says which names are masked and where their masks live.
    """

    stored: Mapping[str, Tensor]
    masked: Mapping[str, MaskedSlot]

    def effective(self, name: str) -> Tensor:
        """The value of ``name`` as the model uses it (masked where a mask applies)."""
        slot = self.masked.get(name)
        return slot.effective() if slot is not None else self.stored[name].detach()

    def shared(self) -> set[str]:
        """Names whose stored tensor shares memory with another name's."""
        counts = Counter(_storage(t) for t in self.stored.values())
        return {n for n, t in self.stored.items() if counts[_storage(t)] > 1 and t.numel() > 0}


def _storage(tensor: Tensor) -> tuple[str, int]:
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return ("unique", id(tensor))
    return (str(tensor.device), tensor.untyped_storage().data_ptr())


def _masked_slot(model: nn.Module, key: str, prefix: str, attr: str) -> MaskedSlot:
    module = model.get_submodule(prefix)
    name = f"{prefix}.{attr}" if prefix else attr
    parametrizations = module.parametrizations[attr]  # type: ignore[index]
    assert isinstance(parametrizations, Iterable)
    steps = list(parametrizations)
    others = [type(p).__name__ for p in steps if not isinstance(p, Mask)]
    if others:
        raise ConfigError(
            f"tensor {name!r} has parametrizations {others} ({key!r}); only prunekit masks can be "
            "saved: remove the others (torch.nn.utils.parametrize.remove_parametrizations) first"
        )
    masks = tuple(p.mask for p in steps if isinstance(p, Mask) and isinstance(p.mask, Tensor))
    return MaskedSlot(module, attr, masks)


def read_state(model: nn.Module) -> ModelState:
    """Map ``model.state_dict()`` to plain names; see the module docstring."""
    stored: dict[str, Tensor] = {}
    masked: dict[str, MaskedSlot] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if not isinstance(value, Tensor):
            raise ConfigError(
                f"state entry {key!r} is a {type(value).__name__}, not a tensor; "
                "only tensor state can be saved without pickle"
            )
        match = _PARAMETRIZED.search(key)
        prefix = key[: match.start()] if match else ""
        if match is None or not parametrize.is_parametrized(
            model.get_submodule(prefix), match["attr"]
        ):
            stored[key] = value
            continue
        if match["rest"] != "original":
            if match["rest"].startswith("original"):
                _masked_slot(model, key, prefix, match["attr"])  # raises: not a mask
            continue  # a buffer of a parametrization module, e.g. the mask itself
        slot = _masked_slot(model, key, prefix, match["attr"])
        name = f"{prefix}.{match['attr']}" if prefix else match["attr"]
        stored[name] = value
        masked[name] = slot
    return ModelState(stored, masked)


def is_binary(mask: Tensor) -> bool:
    """Whether every entry of ``mask`` is exactly 0 or 1."""
    return bool(((mask == 0) | (mask == 1)).all())
