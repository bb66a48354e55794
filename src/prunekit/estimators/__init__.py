"""Importance estimators: one registry (``ESTIMATORS``) of every way prunekit scores or prunes,
each entry declaring where it applies (``capabilities``: units, blocks, layer-wise
reconstruction). ``get_estimator("taylor")`` builds one; ``estimators_for("channel")`` lists
those that fit a granularity; ``score(model, groups, data)`` runs one."""

from __future__ import annotations

from prunekit.estimators.activations import Activation, APoZ, MutualInfo
from prunekit.estimators.base import BLOCKS, CAPABILITIES, LAYERWISE, UNITS, Estimator
from prunekit.estimators.data import ScoringData, as_scoring_data, default_forward
from prunekit.estimators.gradients import Fisher, Gradient, Hessian, Taylor
from prunekit.estimators.oracle import Oracle
from prunekit.estimators.registry import (
    BLOCK_ESTIMATORS,
    ESTIMATORS,
    LLM_METHODS,
    EstimatorClass,
    block_estimator,
    build_estimator,
    capabilities_of,
    estimators_for,
    estimators_with,
    get_estimator,
)
from prunekit.estimators.weights import BNScale, Magnitude, Random

__all__ = [
    "BLOCKS",
    "BLOCK_ESTIMATORS",
    "CAPABILITIES",
    "ESTIMATORS",
    "LAYERWISE",
    "LLM_METHODS",
    "UNITS",
    "APoZ",
    "Activation",
    "BNScale",
    "Estimator",
    "EstimatorClass",
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
    "block_estimator",
    "build_estimator",
    "capabilities_of",
    "default_forward",
    "estimators_for",
    "estimators_with",
    "get_estimator",
]
