"""Analysis: per-layer sensitivity, sparsity allocation under a budget, and estimator grading
against the loss-change oracle."""

from prunekit.analysis.allocation import allocate, allocation_overrides, group_size
from prunekit.analysis.grading import (
    GradingResult,
    GradingRow,
    default_estimators,
    default_oracle,
    grade,
    grade_model,
)
from prunekit.analysis.sensitivity import SensitivityResult, sensitivity

__all__ = [
    "GradingResult",
    "GradingRow",
    "SensitivityResult",
    "allocate",
    "allocation_overrides",
    "default_estimators",
    "default_oracle",
    "grade",
    "grade_model",
    "group_size",
    "sensitivity",
]
