"""Pruning of transformer language models and encoders (issue 5).

Calibration windows and perplexity (``calibration``, ``perplexity``), layer-by-layer one-shot
pruning with magnitude, Wanda and SparseGPT (``sequential``, ``methods``, ``LLM_METHODS``) with
uniform or outlier-weighted (``owl``) layer sparsity, depth pruning of whole blocks (``depth``),
sentence-embedding retention of encoders (``embedding``), and loading of local or named
offline models (``models``).
"""

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

__all__ = [
    "BLOCK_SCORES",
    "LLM_METHODS",
    "NAMED_MODELS",
    "BlockInputs",
    "BlockStack",
    "DepthPruneResult",
    "EmbeddingRetention",
    "InputStats",
    "LLMMethod",
    "LLMPruneConfig",
    "LLMPruneResult",
    "LayerPrune",
    "Magnitude",
    "Perplexity",
    "SparseGPT",
    "SparsityTarget",
    "Wanda",
    "angular_scores",
    "block_outlier_ratios",
    "block_stats",
    "calibration_windows",
    "capture_block_inputs",
    "embedding_retention",
    "find_blocks",
    "get_llm_method",
    "greedy_generate",
    "layer_names",
    "load_model",
    "lowest_blocks",
    "owl_layer_sparsity",
    "owl_sparsities",
    "perplexity",
    "perplexity_scores",
    "prune_block",
    "prune_depth",
    "prune_llm",
    "read_sentences",
    "read_text",
    "record_inputs",
    "remove_blocks",
    "score_blocks",
    "sentence_embeddings",
    "sparsegpt_prune",
    "token_windows",
    "tokenize",
]
