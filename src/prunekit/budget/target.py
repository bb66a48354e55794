"""Budget targets: what fraction of the dense model's MACs, parameters or measured latency the
pruned model keeps.

A user thinks "half the MACs" or "half the time in onnxruntime", not "remove 37% of the
channels": a :class:`Target` says which cost and what fraction of it is KEPT (and, for latency,
in which runtime), and :func:`~prunekit.budget.select_to_target` finds the selection that meets it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from prunekit.errors import ConfigError, closest
from prunekit.measure.runtimes import RUNTIMES as LATENCY_RUNTIMES

Metric = Literal["macs", "params", "size", "latency"]
METRICS: tuple[Metric, ...] = ("macs", "params", "size", "latency")


@dataclass(frozen=True)
class Target:
    """Keep ``keep`` (in (0, 1]) of the dense model's ``metric``: ``Target("macs", 0.5)`` is
    half the multiply-accumulates of one forward pass, ``Target("params", 0.3)`` 30% of the
    parameters, ``Target("size", 0.25)`` a quarter of the bytes of the saved weights (every
    parameter and buffer, as plain safetensors), ``Target("latency", 0.5, "onnxruntime")`` half
    the single-threaded forward time on the example inputs, measured in onnxruntime (the default
    runtime), OpenVINO or ``"torch"`` eager."""

    metric: Metric
    keep: float
    runtime: str | None = None

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
        self._check_runtime()

    def _check_runtime(self) -> None:
        if self.metric != "latency":
            if self.runtime is not None:
                raise ConfigError(
                    f"target {self.metric}= takes no runtime (got {self.runtime!r}); only a "
                    "latency target is measured in a runtime"
                )
            return
        runtime = LATENCY_RUNTIMES[0] if self.runtime is None else self.runtime
        if runtime not in LATENCY_RUNTIMES:
            raise ConfigError(
                f"latency target runtime {runtime!r} is not one of "
                f"{', '.join(LATENCY_RUNTIMES)}{closest(str(runtime), LATENCY_RUNTIMES)}"
            )
        object.__setattr__(self, "runtime", runtime)

    def __str__(self) -> str:
        text = f"{self.metric}={self.keep:g}"
        return text if self.runtime is None else f"{text},runtime={self.runtime}"

    def as_dict(self) -> dict[str, float | str]:
        """The mapping form :func:`parse_target` reads back."""
        out: dict[str, float | str] = {self.metric: self.keep}
        if self.runtime is not None:
            out["runtime"] = self.runtime
        return out


def parse_target(value: Target | Mapping[str, float | str] | str) -> Target:
    """A :class:`Target` from ``Target(...)``, ``{"macs": 0.5}``, ``"params=0.3"``,
    ``{"latency": 0.5, "runtime": "onnxruntime"}`` or ``"latency=0.5,runtime=torch"``."""
    if isinstance(value, Target):
        return value
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, Mapping):
        return _from_mapping(value)
    raise ConfigError(
        f"a target is a Target, a mapping like {{'macs': 0.5}} or a string like 'macs=0.5', "
        f"got {type(value).__name__}"
    )


def _from_mapping(value: Mapping[str, float | str]) -> Target:
    items = {str(k).strip().lower(): v for k, v in value.items()}
    runtime = items.pop("runtime", None)
    if len(items) != 1:
        raise ConfigError(
            f"a target names exactly one metric, got {dict(value)!r}; give e.g. "
            "{'macs': 0.5}, {'params': 0.5} or {'latency': 0.5, 'runtime': 'onnxruntime'}"
        )
    ((metric, keep),) = items.items()
    if runtime is not None and not isinstance(runtime, str):
        raise ConfigError(f"target runtime must be a name like 'onnxruntime', got {runtime!r}")
    return Target(cast(Metric, metric), cast(float, keep), runtime)


def _parse_text(text: str) -> Target:
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    pairs: dict[str, str] = {}
    for part in parts:
        key, sep, number = part.partition("=")
        if not sep:
            key, sep, number = part.partition(":")
        if not sep:
            raise ConfigError(
                f"target {text!r} is not of the form metric=fraction, e.g. 'macs=0.5'"
            )
        pairs[key.strip().lower()] = number.strip()
    runtime = pairs.pop("runtime", None)
    if len(pairs) != 1:
        raise ConfigError(
            f"target {text!r} names {len(pairs)} metrics; give exactly one, e.g. 'macs=0.5'"
        )
    ((metric, number),) = pairs.items()
    try:
        keep = float(number)
    except ValueError:
        raise ConfigError(
            f"target {text!r}: {number!r} is not a number (the fraction kept, in (0, 1])"
        ) from None
    return Target(cast(Metric, metric), keep, runtime)
