"""The layer-wise pruning methods (magnitude, Wanda, SparseGPT): re-exported from
:mod:`prunekit.estimators.layerwise`, where they join the one estimator registry."""

from prunekit.estimators.layerwise import (
    LLM_METHODS,
    Compare,
    LayerPrune,
    LLMMethod,
    Magnitude,
    ScoreMethod,
    SparseGPT,
    SparsityTarget,
    Wanda,
    get_llm_method,
    select_keep,
)

__all__ = [
    "LLM_METHODS",
    "Compare",
    "LLMMethod",
    "LayerPrune",
    "Magnitude",
    "ScoreMethod",
    "SparseGPT",
    "SparsityTarget",
    "Wanda",
    "get_llm_method",
    "select_keep",
]
