"""Small facts about an ATen call's arguments that the structural tracer needs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor


def root(t: Tensor) -> Tensor:
    """The tensor that owns ``t``'s memory (``t`` itself unless it is a view)."""
    return t._base if t._base is not None else t


_WRITES: dict[Any, bool] = {}


def writes_first(func: Any) -> bool:
    """True if the ATen op writes into its first argument (``add_``, ``copy_``)."""
    found = _WRITES.get(func)
    if found is None:
        schema_args = getattr(getattr(func, "_schema", None), "arguments", ())
        alias = schema_args[0].alias_info if schema_args else None
        found = _WRITES[func] = bool(alias is not None and alias.is_write)
    return found


def tensor_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Iterator[Tensor]:
    """The tensors among an ATen call's arguments (ATen nests them one list deep at most)."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from (t for t in v if isinstance(t, Tensor))
