"""The budget of a search: keep at most a fraction of the dense model's MACs, parameters,
latency in a runtime, or size on disk.

MACs, params and latency are :class:`~prunekit.budget.Target` metrics; ``size`` (the bytes of
the pruned model's safetensors file, :func:`prunekit.measure.dense_size_bytes`) is a search
budget too: for a structurally pruned model it is the bytes of every parameter and buffer, which
shrink with the channels removed, so it differs from ``params`` by the buffers (BatchNorm
statistics) and the element sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prunekit.budget import Target, parse_target
from prunekit.errors import ConfigError

SEARCH_METRICS: tuple[str, ...] = ("macs", "params", "latency", "size")
"""What a search budget may keep a fraction of."""


@dataclass(frozen=True)
class Budget:
    """Keep at most ``keep`` of the dense model's ``metric`` (latency: in ``runtime``)."""

    metric: str
    keep: float
    runtime: str | None = None

    # the text and mapping forms are the budget package's (``parse_target`` reads them back)
    def __str__(self) -> str:
        return Target.__str__(self)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float | str]:
        """The mapping form :func:`parse_budget` reads back."""
        return Target.as_dict(self)  # type: ignore[arg-type]


def _size(value: Mapping[str, float | str] | str) -> float | None:
    """The kept fraction of a ``size`` budget, or None for any other budget."""
    if isinstance(value, str):
        key, sep, number = value.strip().partition("=")
        if not sep or key.strip().lower() != "size":
            return None
        try:
            return float(number)
        except ValueError:
            raise ConfigError(
                f"search: size budget {value!r}: {number!r} is not a number"
            ) from None
    items = {str(k).strip().lower(): v for k, v in value.items()}
    if "size" not in items:
        return None
    if len(items) != 1:
        raise ConfigError(f"search: a size budget takes no other key, got {dict(value)!r}")
    keep = items["size"]
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise ConfigError(f"search: target size= must be a number in (0, 1], got {keep!r}")
    return float(keep)


def parse_budget(value: Budget | Target | Mapping[str, float | str] | str) -> Budget:
    """A :class:`Budget` from ``{"macs": 0.5}``, ``{"latency": 0.5, "runtime": "torch"}``,
    ``{"size": 0.3}``, ``"size=0.3"`` or a :class:`~prunekit.budget.Target`."""
    if isinstance(value, Budget):
        return value
    if isinstance(value, (Mapping, str)):
        keep = _size(value)
        if keep is not None:
            if math.isnan(keep) or not 0.0 < keep <= 1.0:
                raise ConfigError(
                    f"search: target size={keep!r} is outside (0, 1]: it is the fraction of the "
                    "dense model's bytes on disk KEPT (e.g. size=0.5 for half)"
                )
            return Budget("size", keep)
    target = parse_target(value)
    return Budget(target.metric, target.keep, target.runtime)
