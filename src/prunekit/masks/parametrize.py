"""Masks as ``torch.nn.utils.parametrize`` parametrizations.

``apply_masks(model, {"fc1.weight": m})`` makes ``model.fc1.weight`` read as ``original * m``. The
optimizer keeps updating the original, but every forward pass sees the masked value, so masked
weights stay zero through training (the approach of ``torch.ao.pruning``). ``bake_masks`` makes
the zeros permanent and removes the parametrization; ``remove_masks`` restores the original values.

Applying a mask to an already masked tensor combines the two (logical AND), so re-masking with the
same mask is idempotent. Every name and shape is checked before anything is changed, so a bad mask
leaves the model as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.core.groups import Masks
from prunekit.errors import ConfigError


class Mask(nn.Module):
    """Multiplies a tensor by a fixed 0/1 (or soft) mask held as a buffer."""

    mask: Tensor

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.dtype)


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that is safe to unmask independently of the original.

    ``copy.deepcopy`` of a parametrised module gives the copy the *same* injected class
    (``ParametrizedLinear``); removing a parametrization from the copy then deletes the property
    from that shared class and breaks the original (torch 2.13). Each parametrised module of the
    copy gets a class of its own, with the same base and contents.
    """
    replica = copy.deepcopy(model)
    for module in replica.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    return replica


def _split(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr


def _parametrizations(module: nn.Module) -> nn.ModuleDict:
    """The ``parametrizations`` container torch adds to a parametrised module."""
    container = getattr(module, "parametrizations")  # noqa: B009 (added at run time by torch)
    assert isinstance(container, nn.ModuleDict)
    return container


def _mask_module(module: nn.Module, attr: str) -> Mask | None:
    if not parametrize.is_parametrized(module, attr):
        return None
    chain = _parametrizations(module)[attr]
    assert isinstance(chain, nn.ModuleList)
    for p in chain:
        if isinstance(p, Mask):
            return p
    return None


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str, Tensor]:
    module_name, attr = _split(name)
    try:
        module = model.get_submodule(module_name)
    except AttributeError as err:
        raise ConfigError(f"cannot mask {name!r}: the model has no module {module_name!r}") from err
    value = getattr(module, attr, None)
    if not isinstance(value, Tensor):
        raise ConfigError(f"cannot mask {name!r}: module {module_name!r} has no tensor {attr!r}")
    return module, attr, value


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Mask the named tensors of ``model`` in place (1 keeps, 0 removes).

    A tensor used under several names (tied weights, a module registered twice) is masked
    wherever it is used, so every use sees the same values and baking keeps the tie; two
    different masks for one such tensor are refused.
    """
    resolved: dict[int, tuple[str, Tensor, Tensor]] = {}
    for name, mask in masks.items():
        _, _, value = _resolve(model, name)
        if tuple(mask.shape) != tuple(value.shape):
            raise ConfigError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, the tensor has "
                f"{tuple(value.shape)}"
            )
        if not torch.isfinite(mask).all():
            raise ConfigError(f"mask for {name!r} contains NaN or infinite values")
        mask = mask.detach().to(device=value.device, dtype=value.dtype)
        key = id(_storage(model, name))
        if key in resolved and not torch.equal(resolved[key][2], mask):
            raise ConfigError(
                f"masks for {resolved[key][0]!r} and {name!r} differ, but the two names are one "
                "tensor (tied weights): give one mask for it"
            )
        resolved.setdefault(key, (name, _storage(model, name), mask))
    for _, tensor, mask in resolved.values():
        for module, attr in _slots(model, tensor):
            existing = _mask_module(module, attr)
            if existing is not None:
                existing.mask.mul_(mask)
            else:
                parametrize.register_parametrization(module, attr, Mask(mask.clone()))


def _storage(model: nn.Module, name: str) -> Tensor:
    """The parameter or buffer object behind ``name`` (a masked tensor's original)."""
    module, attr, value = _resolve(model, name)
    if parametrize.is_parametrized(module, attr):
        original = getattr(_parametrizations(module)[attr], "original", None)
        if isinstance(original, Tensor):
            return original
    found: Tensor | None = module._parameters.get(attr)
    if found is None:
        found = module._buffers.get(attr)
    return found if found is not None else value


def _slots(model: nn.Module, tensor: Tensor) -> list[tuple[nn.Module, str]]:
    """Every (module, attribute) of ``model`` that holds ``tensor`` (or masks it)."""
    found: list[tuple[nn.Module, str]] = []
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # holds the originals of a masked tensor: reached through its owner
        held = {**module._parameters, **module._buffers}
        if parametrize.is_parametrized(module):
            for attr, chain in _parametrizations(module).items():
                held[attr] = getattr(chain, "original", None)
        found.extend((module, attr) for attr, t in held.items() if t is tensor)
    return found


def is_masked(model: nn.Module, name: str) -> bool:
    module, attr, _ = _resolve(model, name)
    return _mask_module(module, attr) is not None


def masks_of(model: nn.Module) -> Masks:
    """Every mask on ``model``, by tensor name."""
    found: Masks = {}
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for attr in _parametrizations(module):
            mask = _mask_module(module, attr)
            if mask is not None:
                found[f"{module_name}.{attr}" if module_name else attr] = mask.mask.detach().clone()
    return found


def _unmask(model: nn.Module, bake: bool) -> None:
    """Remove every mask; ``bake`` keeps the masked values, otherwise the originals come back.

    A tensor masked at several places (tied weights) is baked once; its other places then
    take the baked tensor, so they stay tied.
    """
    baked: set[int] = set()
    for name in masks_of(model):
        module, attr, _ = _resolve(model, name)
        key = id(_storage(model, name))
        parametrize.remove_parametrizations(
            module, attr, leave_parametrized=bake and key not in baked
        )
        baked.add(key)


def bake_masks(model: nn.Module) -> None:
    """Make every mask permanent: masked values become zeros and the masks are removed."""
    _unmask(model, bake=True)


def remove_masks(model: nn.Module) -> None:
    """Remove every mask and restore the original (unmasked) values."""
    _unmask(model, bake=False)
