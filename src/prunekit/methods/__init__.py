"""Training-time pruning methods: lottery tickets (IMP with rewinding), dynamic sparse training
(RigL, SET), sparsity-inducing penalties (L1, group lasso, network slimming), soft filter pruning
and movement pruning. Each is a plain callable or function over prunekit's groups and masks."""

from prunekit.methods.dst import (
    DSTConfig,
    DynamicSparse,
    erk_densities,
    keep_counts,
    layer_sparsity,
)
from prunekit.methods.lottery import (
    TicketConfig,
    TicketResult,
    TicketRound,
    TrainRound,
    find_ticket,
    random_state,
)
from prunekit.methods.movement import MovementMask, MovementPruning
from prunekit.methods.registry import METHODS, TrainingMethod
from prunekit.methods.regularizers import (
    bn_scale_penalty,
    bn_scale_scores,
    group_lasso_penalty,
    l1_penalty,
    with_penalty,
)
from prunekit.methods.soft_filter import SoftFilterPruning
from prunekit.recovery.originals import load_originals, mask_buffer, original_state, original_tensor

__all__ = [
    "METHODS",
    "DSTConfig",
    "DynamicSparse",
    "MovementMask",
    "MovementPruning",
    "SoftFilterPruning",
    "TicketConfig",
    "TicketResult",
    "TicketRound",
    "TrainRound",
    "TrainingMethod",
    "bn_scale_penalty",
    "bn_scale_scores",
    "erk_densities",
    "find_ticket",
    "group_lasso_penalty",
    "keep_counts",
    "l1_penalty",
    "layer_sparsity",
    "load_originals",
    "mask_buffer",
    "original_state",
    "original_tensor",
    "random_state",
    "with_penalty",
]
