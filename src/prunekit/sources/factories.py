"""Builders for the user's own code and prunekit's reference models.

``path/to/file.py:make`` imports the file by path, ``package.module:make`` imports the module;
either way ``make(**kwargs)`` must return a ``torch.nn.Module``. A bare name builds one of
prunekit's reference models (:data:`prunekit.models.MODELS`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from prunekit.errors import ConfigError, closest
from prunekit.sources.base import Built, SourceError, one_line


def build_prunekit(name: str, kwargs: Mapping[str, Any]) -> Built:
    """``prunekit.models.build_model(name, **kwargs)``; its input shape is its example input's."""
    from prunekit.models import MODELS, build_model

    try:
        canonical = MODELS.canonical(name)
        model = build_model(canonical, **kwargs)
    except ConfigError as error:
        raise SourceError(
            f"{error}; other models: torchvision:NAME, timm:NAME, hf:DIR, FILE.py:FACTORY, "
            "MODULE:FACTORY"
        ) from error
    return Built(model=model, spec=canonical, input_shape=_example_shape(model))


def build_file(path: str, factory: str, kwargs: Mapping[str, Any]) -> Built:
    """Import the Python file ``path`` and call its ``factory(**kwargs)``."""
    file = Path(path).expanduser().resolve()
    shown = f"{path}:{factory}"
    if not file.is_file():
        raise SourceError(f"model file {path!r} does not exist (spec {shown!r})")
    module = _import_file(file, shown)
    return _call(module, factory, shown, f"{file}:{factory}", kwargs)


def build_module(module_name: str, factory: str, kwargs: Mapping[str, Any]) -> Built:
    """Import ``module_name`` and call its ``factory(**kwargs)``."""
    shown = f"{module_name}:{factory}"
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise SourceError(
            f"importing {module_name!r} (spec {shown!r}) raised {one_line(error)}"
        ) from error
    return _call(module, factory, shown, shown, kwargs)


def module_exists(module_name: str) -> bool:
    """Whether the top-level package of ``module_name`` can be imported."""
    return importlib.util.find_spec(module_name.split(".")[0]) is not None


def _import_file(file: Path, shown: str) -> ModuleType:
    # a name unique to the path, registered so that dataclasses and pickling inside it work
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:12]
    name = f"prunekit_user_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SourceError(f"model file {str(file)!r} cannot be imported (spec {shown!r})")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise SourceError(
            f"importing {str(file)!r} (spec {shown!r}) raised {one_line(error)}"
        ) from error
    return module


def _call(
    module: ModuleType, factory: str, shown: str, spec: str, kwargs: Mapping[str, Any]
) -> Built:
    target: Any = module
    for part in factory.split("."):
        if not hasattr(target, part):
            names = [n for n in vars(module) if not n.startswith("_")]
            where = shown.rsplit(":", 1)[0]
            raise SourceError(
                f"factory {shown}: {where} has no {factory!r}{closest(factory, names)}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise SourceError(f"factory {shown} is a {type(target).__name__}, not callable")
    try:
        model = target(**kwargs)
    except Exception as error:
        raise SourceError(f"factory {shown} raised {one_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise SourceError(f"factory {shown} returned {type(model).__name__}, not a torch.nn.Module")
    return Built(model=model, spec=spec, input_shape=_example_shape(model))


def _example_shape(model: nn.Module) -> tuple[int, ...] | None:
    """``(1, ...)``: the shape of ``model.example_input()`` with batch 1, when it has one."""
    method = getattr(model, "example_input", None)
    if not callable(method):
        return None
    try:
        example = method()
    except Exception:
        return None  # an example_input that needs arguments says nothing usable
    shape = getattr(example, "shape", None)
    return (1, *(int(v) for v in shape[1:])) if shape is not None and len(shape) >= 1 else None
