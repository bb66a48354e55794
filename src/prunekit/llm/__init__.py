"""Pruning of transformer language models and encoders.

Calibration windows and perplexity (``calibration``, ``perplexity``), layer-by-layer one-shot
pruning with magnitude, Wanda and SparseGPT (``sequential``, ``methods``, ``LLM_METHODS``) with
uniform or outlier-weighted (``owl``) layer sparsity, depth pruning of whole blocks (``depth``),
structured width pruning of attention heads and MLP neurons (``width``, scored by
``width_scores``, saved and loaded by ``pruned_io``), sentence-embedding retention of encoders
(``embedding``), and loading of local or named offline models (``models``).
"""

from prunekit.llm.bias import BiasCompensation, compensate_bias
from prunekit.llm.blocks import BlockInputs, BlockStack, capture_block_inputs, find_blocks
from prunekit.llm.calibration import calibration_windows, read_text, token_windows, tokenize
from prunekit.llm.depth import (
    BLOCK_SCORES,
    DepthPruneResult,
    angular_scores,
    lowest_blocks,
    perplexity_scores,
    prune_depth,
    remove_blocks,
    score_blocks,
)
from prunekit.llm.embedding import (
    EmbeddingRetention,
    embedding_retention,
    read_sentences,
    sentence_embeddings,
)
from prunekit.llm.experts import ExpertPruneResult, expert_scores, prune_experts, remove_experts
from prunekit.llm.heal import HealConfig, HealResult, heal
from prunekit.llm.methods import (
    LLM_METHODS,
    LayerPrune,
    LLMMethod,
    Magnitude,
    SparseGPT,
    SparsityTarget,
    Wanda,
    get_llm_method,
)
from prunekit.llm.models import NAMED_MODELS, load_model
from prunekit.llm.owl import block_outlier_ratios, owl_layer_sparsity, owl_sparsities
from prunekit.llm.perplexity import Perplexity, greedy_generate, perplexity
from prunekit.llm.pruned_io import config_describes_shapes, load_pruned, save_pruned
from prunekit.llm.sequential import (
    LLMPruneConfig,
    LLMPruneResult,
    block_stats,
    layer_names,
    prune_block,
    prune_llm,
)
from prunekit.llm.sparsegpt import sparsegpt_prune
from prunekit.llm.stats import InputStats, record_inputs
from prunekit.llm.stream_width import StreamWidthConfig, prune_width_streaming
from prunekit.llm.streaming import StreamResult, prune_streaming
from prunekit.llm.width import (
    UnitKind,
    WidthAllocation,
    WidthPruneConfig,
    WidthPruneResult,
    allocate,
    candidate_splits,
    prune_width,
)
from prunekit.llm.width_scores import (
    FixedScores,
    UnitActivation,
    calibration_loss,
    lm_scoring_data,
)

__all__ = [
    "BLOCK_SCORES",
    "LLM_METHODS",
    "NAMED_MODELS",
    "BiasCompensation",
    "BlockInputs",
    "BlockStack",
    "DepthPruneResult",
    "EmbeddingRetention",
    "ExpertPruneResult",
    "FixedScores",
    "HealConfig",
    "HealResult",
    "InputStats",
    "LLMMethod",
    "LLMPruneConfig",
    "LLMPruneResult",
    "LayerPrune",
    "Magnitude",
    "Perplexity",
    "SparseGPT",
    "SparsityTarget",
    "StreamResult",
    "StreamWidthConfig",
    "UnitActivation",
    "UnitKind",
    "Wanda",
    "WidthAllocation",
    "WidthPruneConfig",
    "WidthPruneResult",
    "allocate",
    "angular_scores",
    "block_outlier_ratios",
    "block_stats",
    "calibration_loss",
    "calibration_windows",
    "candidate_splits",
    "capture_block_inputs",
    "compensate_bias",
    "config_describes_shapes",
    "embedding_retention",
    "expert_scores",
    "find_blocks",
    "get_llm_method",
    "greedy_generate",
    "heal",
    "layer_names",
    "lm_scoring_data",
    "load_model",
    "load_pruned",
    "lowest_blocks",
    "owl_layer_sparsity",
    "owl_sparsities",
    "perplexity",
    "perplexity_scores",
    "prune_block",
    "prune_depth",
    "prune_experts",
    "prune_llm",
    "prune_streaming",
    "prune_width",
    "prune_width_streaming",
    "read_sentences",
    "read_text",
    "record_inputs",
    "remove_blocks",
    "remove_experts",
    "save_pruned",
    "score_blocks",
    "sentence_embeddings",
    "sparsegpt_prune",
    "token_windows",
    "tokenize",
]
