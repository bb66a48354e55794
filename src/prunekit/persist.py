"""Save and load pruned models in one call: :func:`save` and :func:`load`.

:func:`save` writes a :class:`~prunekit.result.PruneResult` (or any model) with its structural
plan; :func:`load` reads it back and rebuilds the pruned shapes from the plan itself, so the user
never wires a rebuild hook. The files are those of :mod:`prunekit.io` (safetensors +
``prunekit.json``, no pickle).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.errors import ConfigError
from prunekit.io import load as load_files
from prunekit.io import read_metadata
from prunekit.io import save as save_files
from prunekit.result import PruneResult
from prunekit.sources import load_model
from prunekit.surgery import rebuild_hook


def save(
    obj: PruneResult | nn.Module,
    path: str | Path,
    *,
    arch: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``obj`` to the directory ``path``: a pruning result with its plan and config, or
    a plain (possibly masked) model. ``arch`` tells :func:`load` how to build the dense
    architecture when no model is given (``{"model": NAME, "kwargs": {...}}`` for prunekit's
    reference models or any model spec such as ``{"model": "torchvision:resnet18"}``)."""
    if isinstance(obj, PruneResult):
        if extra:
            raise ConfigError("extra= is only for plain models; a result records its config")
        return obj.save(path, arch=arch)
    if not isinstance(obj, nn.Module):
        raise ConfigError(f"save() takes a PruneResult or an nn.Module, got {type(obj).__name__}")
    return save_files(obj, path, arch=arch, extra=extra)


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load the save directory ``path``: into ``model`` (the dense architecture, changed in
    place when the save has no plan) or, without one, into the architecture the save names.
    Pruned shapes are rebuilt from the saved plan."""
    if model is None:
        model = _source_model(path)
    return load_files(path, model, rebuild_hook=rebuild_hook)


def _source_model(path: str | Path) -> nn.Module | None:
    """The dense model named by a save's ``arch.model`` when it is a model spec
    (``torchvision:resnet18``, ``timm:...``, ``hf:DIR``, ``file.py:factory``), or ``None`` to let
    :func:`prunekit.io.load` build a reference model by name."""
    arch = read_metadata(path).arch or {}
    spec = str(arch.get("model", ""))
    if ":" not in spec:
        return None
    return load_model(spec, kwargs=arch.get("kwargs") or {}).model
