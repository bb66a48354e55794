"""A Hugging Face causal LM built without its weights, filled one block at a time.

:func:`build_skeleton` builds the model from its ``config.json`` with every parameter on the meta
device (``accelerate.init_empty_weights``; buffers such as the rotary frequencies stay real, they
are computed from the config and not stored). :func:`materialise` puts checkpoint tensors into
named parameters, :func:`release` sends a module's parameters back to the meta device, so a
model of any size costs the memory of the parts that are filled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.errors import ConfigError, DataError
from prunekit.llm.shards import ShardedCheckpoint


def build_skeleton(directory: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    """``(model, config)``: the causal LM of ``directory/config.json`` with meta parameters."""
    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (directory / "config.json").is_file():
        raise ConfigError(f"model directory {str(directory)!r} has no config.json")
    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (ValueError, KeyError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"config.json in {str(directory)!r} cannot be read: {first}") from None
    try:
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    except ValueError:
        raise ConfigError(
            f"model type {getattr(config, 'model_type', '?')!r} in {str(directory)!r} has no "
            "causal language model class in transformers; streaming prunes decoder LLMs"
        ) from None
    model.tie_weights()  # from_config leaves tied weights (lm_head = embeddings) as two tensors
    model.eval()
    return model, config


def _tied_names(model: nn.Module) -> dict[str, list[str]]:
    """Every name of each parameter, keyed by its first name (tied weights share one entry)."""
    groups: dict[int, list[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attr, param in module._parameters.items():
            if param is not None:
                full = f"{module_name}.{attr}" if module_name else attr
                groups.setdefault(id(param), []).append(full)
    return {names[0]: names for names in groups.values()}


def check_coverage(model: nn.Module, checkpoint: ShardedCheckpoint) -> dict[str, str]:
    """Every parameter of ``model`` -> the checkpoint name that holds it; refuse a parameter
    the checkpoint lacks (under each of its tied names) or stores with another shape."""
    where: dict[str, str] = {}
    for names in _tied_names(model).values():
        stored = [n for n in names if n in checkpoint]
        if not stored:
            raise DataError(
                f"checkpoint {str(checkpoint.directory)!r} has no tensor {names[0]!r} that the "
                "model's config needs"
            )
        expected = tuple(model.get_parameter(names[0]).shape)
        found = checkpoint.info[stored[0]].shape
        if found != expected:
            raise DataError(
                f"tensor {stored[0]!r} in {str(checkpoint.directory)!r} has shape {found}, the "
                f"config gives {expected}"
            )
        for name in names:
            where[name] = stored[0]
    return where


def materialise(model: nn.Module, tensors: Mapping[str, Tensor]) -> None:
    """Put each tensor (by fully qualified name) into the model as a frozen parameter."""
    for name, tensor in tensors.items():
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)


def release(module: nn.Module) -> None:
    """Send the parameters of ``module`` back to the meta device (frees their memory)."""
    for sub in module.modules():
        for attr, param in list(sub._parameters.items()):
            if param is not None:
                sub._parameters[attr] = nn.Parameter(
                    torch.empty_like(param, device="meta"), requires_grad=False
                )


def release_named(model: nn.Module, names: Iterable[str]) -> None:
    """Send the named parameters back to the meta device."""
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        param = module._parameters[attr]
        if param is not None:
            module._parameters[attr] = nn.Parameter(
                torch.empty_like(param, device="meta"), requires_grad=False
            )
