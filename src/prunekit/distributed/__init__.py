"""Multi-process pruning and recovery on :mod:`torch.distributed` (Gloo on CPU, NCCL on CUDA).

``finetune_ddp`` fine-tunes a (masked) model with DistributedDataParallel;
``prune_llm_distributed`` splits an LLM's calibration windows over processes and sums the
per-layer statistics (Wanda's masks are bitwise a single process's, SparseGPT's up to float32
summation order); ``run_processes`` starts N local ranks (tests, benchmarks) and
``init_from_env`` joins a group started by ``torchrun``.
"""

from prunekit.distributed.finetune import DDPConfig, DDPResult, finetune_ddp, zero_masked_originals
from prunekit.distributed.launch import run_processes
from prunekit.distributed.llm import prune_llm_distributed
from prunekit.distributed.process import (
    default_backend,
    init_from_env,
    rank_device,
    require_group,
    shard_range,
)
from prunekit.distributed.stats import all_reduce_stats

__all__ = [
    "DDPConfig",
    "DDPResult",
    "all_reduce_stats",
    "default_backend",
    "finetune_ddp",
    "init_from_env",
    "prune_llm_distributed",
    "rank_device",
    "require_group",
    "run_processes",
    "shard_range",
    "zero_masked_originals",
]
