"""Model family adapters: one registry (``FAMILIES``) of the architecture knowledge that used to
be class-name strings scattered over the code: which modules are attention and how many heads
they hold, how a Hugging Face config records widths, where transformer blocks are, which models
are causal language models, and what a BatchNorm is.
"""

from prunekit.adapters.base import FixedWidth, ModelFamily, ModuleFacts, heads
from prunekit.adapters.hf import (
    CAUSAL_LM_SUFFIX,
    HEAD_DIM_ATTRIBUTES,
    HIDDEN_SIZE_KEYS,
    declared_head_dim,
    is_causal_architecture,
    is_causal_lm,
    makes_constants,
    mlp_config,
)
from prunekit.adapters.norms import (
    BATCHNORM_TYPES,
    NORMALISATION_TYPES,
    batchnorm_layers,
    is_batchnorm,
    is_normalisation,
)
from prunekit.adapters.registry import (
    FAMILIES,
    attention_classes,
    block_paths,
    config_widths,
    fixed_widths,
    is_attention,
    module_facts,
)

__all__ = [
    "BATCHNORM_TYPES",
    "CAUSAL_LM_SUFFIX",
    "FAMILIES",
    "HEAD_DIM_ATTRIBUTES",
    "HIDDEN_SIZE_KEYS",
    "NORMALISATION_TYPES",
    "FixedWidth",
    "ModelFamily",
    "ModuleFacts",
    "attention_classes",
    "batchnorm_layers",
    "block_paths",
    "config_widths",
    "declared_head_dim",
    "fixed_widths",
    "heads",
    "is_attention",
    "is_batchnorm",
    "is_causal_architecture",
    "is_causal_lm",
    "is_normalisation",
    "makes_constants",
    "mlp_config",
    "module_facts",
]
