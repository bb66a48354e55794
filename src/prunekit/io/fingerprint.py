"""Flat, comparable descriptions of the settings a saved state depends on.

A checkpoint records the description of the configuration that produced it; a run that resumes
from it describes its own configuration the same way and compares the two, field by field, so
that a resume with changed settings is refused with the changed fields named instead of silently
continuing a different job.

:func:`describe` turns dataclasses, pydantic models, mappings, sequences and plain values into a
flat ``{"dotted.field": value}`` dict of JSON scalars; other objects are described by their type
and their public attributes that are themselves describable settings (not data, tensors or
modules). :func:`changed_fields` lists the differences in words.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

Scalar = str | int | float | bool | None
Description = dict[str, Scalar]

_MAX_ITEMS = 64
"""Sequences longer than this are described by their length only (they are data, not settings)."""


def describe(value: Any, prefix: str = "") -> Description:
    """``value`` as a flat ``{"dotted.field": scalar}`` dict (see the module docstring)."""
    out: Description = {}
    _walk(value, prefix, out, depth=0)
    return out


def _key(prefix: str, name: object) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _walk(value: Any, prefix: str, out: Description, depth: int) -> None:
    if depth > 6:
        out[prefix or "value"] = _type_name(value)
        return
    if value is None or isinstance(value, (bool, int, float, str)):
        out[prefix or "value"] = value
    elif isinstance(value, enum.Enum):
        out[prefix or "value"] = f"{type(value).__name__}.{value.name}"
    elif isinstance(value, (torch.dtype, torch.device)):
        out[prefix or "value"] = str(value)
    elif isinstance(value, torch.Tensor):
        out[_key(prefix, "shape")] = str(tuple(value.shape))
        out[_key(prefix, "dtype")] = str(value.dtype)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out[_key(prefix, "type")] = _type_name(value)
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name), _key(prefix, f.name), out, depth + 1)
    elif hasattr(value, "model_dump") and callable(value.model_dump):
        out[_key(prefix, "type")] = _type_name(value)
        _walk(value.model_dump(), prefix, out, depth + 1)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _walk(item, _key(prefix, name), out, depth + 1)
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        _walk_sequence(value, prefix, out, depth)
    elif isinstance(value, type) or inspect.isroutine(value):
        out[prefix or "value"] = _type_name(value)
    else:
        _walk_object(value, prefix, out, depth)


def _walk_sequence(value: Sequence[Any], prefix: str, out: Description, depth: int) -> None:
    if len(value) > _MAX_ITEMS:
        out[_key(prefix, "len")] = len(value)
        return
    if not value:
        out[prefix or "value"] = "[]"
    for index, item in enumerate(value):
        _walk(item, _key(prefix, index), out, depth + 1)


def _walk_object(value: Any, prefix: str, out: Description, depth: int) -> None:
    """An object of another kind: its type and its public, setting-like attributes."""
    out[_key(prefix, "type")] = _type_name(value)
    if isinstance(value, torch.nn.Module):
        return
    for name, item in sorted(getattr(value, "__dict__", {}).items()):
        if name.startswith("_") or not _is_setting(item):
            continue
        _walk(item, _key(prefix, name), out, depth + 1)


def _is_setting(value: Any) -> bool:
    """A value an object's description includes: a scalar, a dataclass or a pydantic model
    (a configuration), not a module, tensor or other state."""
    if value is None or isinstance(value, (bool, int, float, str, enum.Enum)):
        return True
    if isinstance(value, type):
        return False
    return dataclasses.is_dataclass(value) or callable(getattr(value, "model_dump", None))


def _type_name(value: Any) -> str:
    kind = value if isinstance(value, type) or inspect.isroutine(value) else type(value)
    module = getattr(kind, "__module__", "") or ""
    name = getattr(kind, "__qualname__", None) or getattr(kind, "__name__", repr(kind))
    return f"{module}.{name}" if module else str(name)


def _same(a: Scalar, b: Scalar) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return (type(a) is type(b) and a == b) or (_number(a) and _number(b) and a == b)


def _number(value: Scalar) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def changed_fields(recorded: Mapping[str, Scalar], current: Mapping[str, Scalar]) -> list[str]:
    """Each field that differs between two descriptions, as ``"name: old -> new"``, sorted.

    A field present on one side only reads ``"name: <absent> -> value"`` (or the reverse).
    """
    changes = []
    for name in sorted(set(recorded) | set(current)):
        old = recorded.get(name, _ABSENT)
        new = current.get(name, _ABSENT)
        if old is _ABSENT or new is _ABSENT or not _same(old, new):
            changes.append(f"{name}: {_show(old)} -> {_show(new)}")
    return changes


_ABSENT: Any = object()


def _show(value: Any) -> str:
    return "<absent>" if value is _ABSENT else repr(value)
