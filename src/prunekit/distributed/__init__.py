"""Multi-process pruning and recovery on :mod:`torch.distributed` (Gloo on CPU, NCCL on CUDA).

``finetune_ddp`` fine-tunes a (masked) model with DistributedDataParallel;
``prune_llm_distributed`` splits an LLM's calibration windows over processes, sums the
per-layer statistics and shares each block's per-layer solves out over the ranks
(``SplitSolver``); ``run_processes`` starts N local ranks (tests, benchmarks) and
``init_from_env`` joins a group started by ``torchrun``.
"""

from prunekit.distributed.finetune import DDPConfig, DDPResult, finetune_ddp, zero_masked_originals
from prunekit.distributed.launch import check_plain, run_processes
from prunekit.distributed.llm import prune_llm_distributed
from prunekit.distributed.process import (
    default_backend,
    init_from_env,
    rank_device,
    require_group,
    shard_range,
)
from prunekit.distributed.solve import SplitSolver, assign_layers, layer_cost
from prunekit.distributed.stats import all_reduce_stats

__all__ = [
    "DDPConfig",
    "DDPResult",
    "SplitSolver",
    "all_reduce_stats",
    "assign_layers",
    "check_plain",
    "default_backend",
    "finetune_ddp",
    "init_from_env",
    "layer_cost",
    "prune_llm_distributed",
    "rank_device",
    "require_group",
    "run_processes",
    "shard_range",
    "zero_masked_originals",
]
