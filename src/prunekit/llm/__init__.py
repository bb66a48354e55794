"""Pruning of transformer language models and encoders (issue 5).

Calibration windows and perplexity (``calibration``, ``perplexity``), layer-by-layer one-shot
pruning with magnitude, Wanda and SparseGPT (``sequential``, ``methods``, ``LLM_METHODS``),
depth pruning of whole blocks (``depth``), and loading of local or named offline models
(``models``).
"""

from prunekit.llm.blocks import BlockInputs, BlockStack, capture_block_inputs, find_blocks
from prunekit.llm.calibration import calibration_windows, read_text, token_windows, tokenize
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
    "LLM_METHODS",
    "NAMED_MODELS",
    "BlockInputs",
    "BlockStack",
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
    "block_stats",
    "calibration_windows",
    "capture_block_inputs",
    "find_blocks",
    "get_llm_method",
    "greedy_generate",
    "layer_names",
    "load_model",
    "perplexity",
    "prune_block",
    "prune_llm",
    "read_text",
    "record_inputs",
    "sparsegpt_prune",
    "token_windows",
    "tokenize",
]
