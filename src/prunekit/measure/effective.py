"""The tensors a model actually computes with: masks applied, each shared tensor once.

A masked layer holds ``parametrizations.weight.original`` (the raw values) and
``parametrizations.weight.0.mask`` (a buffer); ``layer.weight`` reads as their product. Measurement
looks at the effective tensor under its plain name (``layer.weight``), as if the masks were baked,
and never at the raw original, so a masked model is measured like the pruned model it stands for.
Nothing here changes the model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _parametrization_internals(model: nn.Module) -> set[int]:
    """Ids of the modules that implement parametrizations (not part of the user's network)."""
    inside: set[int] = set()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            inside.update(id(m) for m in module.parametrizations.modules())  # type: ignore[union-attr]
    return inside


def _network_modules(model: nn.Module, remove_duplicate: bool) -> Iterator[tuple[str, nn.Module]]:
    inside = _parametrization_internals(model)
    for name, module in model.named_modules(remove_duplicate=remove_duplicate):
        if id(module) not in inside:
            yield name, module


def effective_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter as the forward pass sees it (masks applied), each shared tensor once.

    A tensor tied between several modules is listed under the first name it is reached by.
    """
    seen: set[int] = set()
    found: dict[str, Tensor] = {}
    with torch.no_grad():
        for prefix, module in _network_modules(model, remove_duplicate=True):
            for name, param in module.named_parameters(recurse=False):
                if id(param) not in seen:
                    seen.add(id(param))
                    found[_join(prefix, name)] = param.detach()
            if not parametrize.is_parametrized(module):
                continue
            for attr, plist in module.parametrizations.items():  # type: ignore[union-attr,operator]
                originals = [id(p) for p in plist.parameters(recurse=False)]
                if not originals or any(i in seen for i in originals):
                    continue
                seen.update(originals)
                found[_join(prefix, attr)] = getattr(module, attr).detach()
    return found


def _parametrized_prefixes(model: nn.Module) -> dict[str, nn.Module]:
    """``"<name>.parametrizations."`` -> module, for every parametrized module (all its names)."""
    return {
        _join(name, "parametrizations."): module
        for name, module in _network_modules(model, remove_duplicate=False)
        if parametrize.is_parametrized(module)
    }


def effective_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict as it would be after baking the masks, computed without baking.

    Parametrization entries (``...parametrizations.weight.original``, the mask buffers) are
    replaced, in place, by the effective tensor under its plain name (``...weight``). A module
    reachable under two names yields the same tensor object under both, so serialisers can tell
    that it is shared.
    """
    prefixes = _parametrized_prefixes(model)
    cache: dict[tuple[int, str], Tensor] = {}
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is None:
                out[key] = value.detach()
                continue
            module = prefixes[prefix]
            attr = key[len(prefix) :].split(".", 1)[0]
            name = prefix[: -len("parametrizations.")] + attr
            if name in out:
                continue
            if (id(module), attr) not in cache:
                cache[id(module), attr] = getattr(module, attr).detach()
            out[name] = cache[id(module), attr]
    return out
