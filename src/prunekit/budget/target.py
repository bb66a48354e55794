"""Budget targets: what fraction of the dense model's MACs or parameters the pruned model keeps.

A user thinks "half the MACs", not "remove 37% of the channels": a :class:`Target` says which
cost and what fraction of it is KEPT, and :func:`~prunekit.budget.select_to_target` finds the
selection that meets it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from prunekit.errors import ConfigError, closest

Metric = Literal["macs", "params"]
METRICS: tuple[Metric, ...] = ("macs", "params")


@dataclass(frozen=True)
class Target:
    """Keep ``keep`` (in (0, 1]) of the dense model's ``metric``: ``Target("macs", 0.5)`` is
    half the multiply-accumulates of one forward pass, ``Target("params", 0.3)`` 30% of the
    parameters."""

    metric: Metric
    keep: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(
                f"unknown target metric {self.metric!r}{closest(str(self.metric), METRICS)}; "
                f"choose from {METRICS}"
            )
        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float)):
            raise ConfigError(f"target {self.metric}= must be a number in (0, 1], got {keep!r}")
        if math.isnan(keep) or not 0.0 < keep <= 1.0:
            raise ConfigError(
                f"target {self.metric}={keep!r} is outside (0, 1]: it is the fraction of the "
                f"dense model's {self.metric} KEPT (e.g. {self.metric}=0.5 for half)"
            )
        object.__setattr__(self, "keep", float(keep))

    def __str__(self) -> str:
        return f"{self.metric}={self.keep:g}"


def parse_target(value: Target | Mapping[str, float] | str) -> Target:
    """A :class:`Target` from ``Target(...)``, ``{"macs": 0.5}`` or ``"params=0.3"``."""
    if isinstance(value, Target):
        return value
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ConfigError(
                f"a target names exactly one metric, got {dict(value)!r}; give e.g. "
                "{'macs': 0.5} or {'params': 0.5}"
            )
        ((metric, keep),) = value.items()
        return Target(cast(Metric, str(metric).strip().lower()), keep)
    raise ConfigError(
        f"a target is a Target, a mapping like {{'macs': 0.5}} or a string like 'macs=0.5', "
        f"got {type(value).__name__}"
    )


def _parse_text(text: str) -> Target:
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if len(parts) != 1:
        raise ConfigError(
            f"target {text!r} names {len(parts)} metrics; give exactly one, e.g. 'macs=0.5'"
        )
    metric, sep, number = parts[0].partition("=")
    if not sep:
        metric, sep, number = parts[0].partition(":")
    if not sep:
        raise ConfigError(f"target {text!r} is not of the form metric=fraction, e.g. 'macs=0.5'")
    try:
        keep = float(number)
    except ValueError:
        raise ConfigError(
            f"target {text!r}: {number.strip()!r} is not a number (the fraction kept, in (0, 1])"
        ) from None
    return Target(cast(Metric, metric.strip().lower()), keep)
