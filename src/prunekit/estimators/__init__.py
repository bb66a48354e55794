"""Importance estimators: one registry, every estimator usable at every granularity it makes
sense for. ``get_estimator("taylor")`` builds one; ``score(model, groups, data)`` runs it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from prunekit.errors import ConfigError
from prunekit.estimators.activations import Activation, APoZ, MutualInfo
from prunekit.estimators.base import Estimator
from prunekit.estimators.data import ScoringData, as_scoring_data, default_forward
from prunekit.estimators.gradients import Fisher, Gradient, Hessian, Taylor
from prunekit.estimators.oracle import Oracle
from prunekit.estimators.weights import BNScale, Magnitude, Random
from prunekit.registry import Registry

ESTIMATORS: Registry[type[Estimator]] = Registry(
    "estimator",
    {
        cls.name: cls
        for cls in (
            Magnitude,
            Gradient,
            Taylor,
            Fisher,
            Hessian,
            Activation,
            APoZ,
            MutualInfo,
            Random,
            Oracle,
        )
    },
)
ESTIMATORS.register(BNScale.name, BNScale, aliases=("bn-scale", "slimming"))


def get_estimator(spec: str | Estimator, **options: Any) -> Estimator:
    """Build an estimator by registry name with options (e.g. ``get_estimator("magnitude", p=2)``);
    an :class:`Estimator` instance passes through (options are then not allowed)."""
    if isinstance(spec, Estimator):
        if options:
            raise ConfigError("options cannot be given with an estimator instance")
        return spec
    return build_estimator(ESTIMATORS.get(spec), options)


def build_estimator(cls: type[Estimator], options: dict[str, Any]) -> Estimator:
    """``cls(**options)``, refusing an option the estimator does not have by name."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(
            f"estimator {cls.name!r} has no option {unknown[0]!r}; options: {sorted(valid)}"
        )
    return cls(**options)


__all__ = [
    "ESTIMATORS",
    "APoZ",
    "Activation",
    "BNScale",
    "Estimator",
    "Fisher",
    "Gradient",
    "Hessian",
    "Magnitude",
    "MutualInfo",
    "Oracle",
    "Random",
    "ScoringData",
    "Taylor",
    "as_scoring_data",
    "build_estimator",
    "default_forward",
    "get_estimator",
]
