"""The one estimator registry: every way prunekit scores or prunes, with what it applies to.

Each entry declares ``capabilities`` (:data:`prunekit.estimators.base.CAPABILITIES`): ``units``
(per-layer or structural groups), ``blocks`` (whole residual blocks, granularity ``"layer"``) and
``layerwise-reconstruction`` (one layer at a time from calibration statistics, for language
models). A name means one idea everywhere: ``oracle`` on blocks skips the block (its block
implementation is :data:`BLOCK_ESTIMATORS`'s), ``magnitude`` layer by layer is
:class:`prunekit.estimators.layerwise.Magnitude` (in :data:`LLM_METHODS`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from prunekit.errors import ConfigError
from prunekit.estimators.activations import Activation, APoZ, MutualInfo
from prunekit.estimators.base import BLOCKS, LAYERWISE, UNITS, Estimator
from prunekit.estimators.block_scores import Angular, SkipOracle
from prunekit.estimators.gradients import Fisher, Gradient, Hessian, Taylor
from prunekit.estimators.layerwise import LLM_METHODS, LLMMethod, SparseGPT, Wanda
from prunekit.estimators.oracle import Oracle
from prunekit.estimators.weights import BNScale, Magnitude, Random
from prunekit.granularity import Granularity, get_granularity
from prunekit.registry import Registry

EstimatorClass = type[Estimator] | type[LLMMethod]

ESTIMATORS: Registry[EstimatorClass] = Registry(
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
            Angular,
            Wanda,
            SparseGPT,
        )
    },
)
ESTIMATORS.register(BNScale.name, BNScale, aliases=("bn-scale", "slimming"))

BLOCK_ESTIMATORS: Registry[type[Estimator]] = Registry(
    "block estimator", {"angular": Angular, "oracle": SkipOracle}
)
"""Estimators that score whole blocks by what they compute; their names take precedence over the
registry's (``oracle`` on blocks skips the block instead of zeroing its weights)."""


def capabilities_of(name: str) -> frozenset[str]:
    """What the registry entry ``name`` applies to."""
    return ESTIMATORS.get(name).capabilities


def estimators_with(capability: str) -> list[str]:
    """Registry names that declare ``capability`` (``"units"``, ``"blocks"``,
    ``"layerwise-reconstruction"``)."""
    return [name for name in ESTIMATORS.names() if capability in capabilities_of(name)]


def estimators_for(granularity: str | Granularity) -> list[str]:
    """Registry names that can score ``granularity``'s units: block scorers for whole blocks
    (``"layer"``); otherwise unit scorers, those that score output units from activations only
    where units are whole neurons or channels."""
    gran = get_granularity(granularity)
    if gran.unit == "block":
        return estimators_with(BLOCKS)
    names = []
    for name in estimators_with(UNITS):
        cls = ESTIMATORS.get(name)
        if gran.structural or not (issubclass(cls, Estimator) and cls.output_units_only):
            names.append(name)
    return names


def get_estimator(spec: str | Estimator, **options: Any) -> Estimator:
    """Build an estimator by registry name with options (e.g. ``get_estimator("magnitude", p=2)``);
    an :class:`Estimator` instance passes through (options are then not allowed). A layer-wise
    method (``wanda``, ``sparsegpt``) has no scores of its own: it is refused with where it runs."""
    if isinstance(spec, Estimator):
        if options:
            raise ConfigError("options cannot be given with an estimator instance")
        return spec
    cls = ESTIMATORS.get(spec)
    if not issubclass(cls, Estimator):
        raise ConfigError(
            f"estimator {cls.name!r} prunes language models layer by layer ({LAYERWISE}): "
            f"use prunekit.llm.prune_llm or `prunekit llm prune --method {cls.name}`"
        )
    return build_estimator(cls, options)


def build_estimator(cls: type[Estimator], options: dict[str, Any]) -> Estimator:
    """``cls(**options)``, refusing an option the estimator does not have by name."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(
            f"estimator {cls.name!r} has no option {unknown[0]!r}; options: {sorted(valid)}"
        )
    return cls(**options)


def block_estimator(spec: str | Estimator, **options: Any) -> Estimator:
    """The estimator for block groups: a :data:`BLOCK_ESTIMATORS` name, any other registry name
    with the ``blocks`` capability (lifted: its values reduce over the block's parameters,
    ``reduction="sum"`` or ``"mean"``), or an :class:`Estimator` instance."""
    if isinstance(spec, str) and spec in BLOCK_ESTIMATORS:
        return build_estimator(BLOCK_ESTIMATORS.get(spec), options)
    estimator = get_estimator(spec, **options)
    if estimator.output_units_only or BLOCKS not in estimator.capabilities:
        raise ConfigError(
            f"estimator {estimator.name!r} scores output channels from activations; at layer "
            f"granularity use {', '.join(estimators_with(BLOCKS))}"
        )
    return estimator


__all__ = [
    "BLOCK_ESTIMATORS",
    "ESTIMATORS",
    "LLM_METHODS",
    "EstimatorClass",
    "block_estimator",
    "build_estimator",
    "capabilities_of",
    "estimators_for",
    "estimators_with",
    "get_estimator",
]
