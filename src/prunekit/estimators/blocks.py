"""Block scores (``angular``, the skip ``oracle``) and :func:`block_estimator`: re-exported from
:mod:`prunekit.estimators.block_scores` and :mod:`prunekit.estimators.registry`."""

from prunekit.estimators.block_scores import Angular, SkipOracle, angular_distances, block_of
from prunekit.estimators.registry import BLOCK_ESTIMATORS, block_estimator

__all__ = [
    "BLOCK_ESTIMATORS",
    "Angular",
    "SkipOracle",
    "angular_distances",
    "block_estimator",
    "block_of",
]
