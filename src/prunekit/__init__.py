"""prunekit: importance estimation and pruning for PyTorch.

The pipeline, each stage usable alone: build groups of units at a granularity, score them with an
estimator, select which go, apply masks (or surgery), measure. ``prunekit.prune`` composes them.
"""

from prunekit._version import __version__
from prunekit.api import PruneResult, ScoreResult, prune, score
from prunekit.core import Group, SelectionConfig, select, selection_to_masks
from prunekit.estimators import ESTIMATORS, ScoringData, get_estimator
from prunekit.granularity import GRANULARITIES, build_groups, get_granularity
from prunekit.masks import apply_masks, bake_masks, masks_of, remove_masks

__all__ = [
    "ESTIMATORS",
    "GRANULARITIES",
    "Group",
    "PruneResult",
    "ScoreResult",
    "ScoringData",
    "SelectionConfig",
    "__version__",
    "apply_masks",
    "bake_masks",
    "build_groups",
    "get_estimator",
    "get_granularity",
    "masks_of",
    "prune",
    "remove_masks",
    "score",
    "select",
    "selection_to_masks",
]
