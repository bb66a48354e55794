"""prunekit: importance estimation and pruning for PyTorch.

The pipeline, each stage usable alone: build groups of units at a granularity, score them with an
estimator, select which go, apply masks (or surgery), measure. ``prunekit.prune`` composes them,
configured by one :class:`PruneConfig` and answered by one :class:`PruneResult`;
``prunekit.save`` / ``prunekit.load`` write and read pruned models (safetensors + a JSON plan).
"""

from prunekit import analysis, io, measure, sparse, surgery
from prunekit._version import __version__
from prunekit.api import ScoreResult, prune, score
from prunekit.config import PruneConfig
from prunekit.core import Group, SelectionConfig, select, selection_to_masks
from prunekit.estimators import ESTIMATORS, ScoringData, get_estimator
from prunekit.granularity import GRANULARITIES, build_groups, get_granularity
from prunekit.masks import apply_masks, bake_masks, clone_model, masks_of, remove_masks
from prunekit.persist import load, save
from prunekit.result import PruneResult
from prunekit.sparse import load_compressed, save_compressed, sparsify

__all__ = [
    "ESTIMATORS",
    "GRANULARITIES",
    "Group",
    "PruneConfig",
    "PruneResult",
    "ScoreResult",
    "ScoringData",
    "SelectionConfig",
    "__version__",
    "analysis",
    "apply_masks",
    "bake_masks",
    "build_groups",
    "clone_model",
    "get_estimator",
    "get_granularity",
    "io",
    "load",
    "load_compressed",
    "masks_of",
    "measure",
    "prune",
    "remove_masks",
    "save",
    "save_compressed",
    "score",
    "select",
    "selection_to_masks",
    "sparse",
    "sparsify",
    "surgery",
]
