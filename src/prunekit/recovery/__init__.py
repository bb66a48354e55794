"""Recovery after pruning: BatchNorm recalibration, fine-tuning with optional distillation, and
atomic checkpoints that let long pruning jobs resume after being killed."""

from prunekit.recovery.batchnorm import batchnorm_layers, recalibrate_batchnorm
from prunekit.recovery.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from prunekit.recovery.distill import DistillConfig, distillation_loss, feature_loss, soft_kl
from prunekit.recovery.finetune import (
    EpochRecord,
    FinetuneConfig,
    FinetuneResult,
    finetune,
    train_distilled,
)
from prunekit.recovery.resume import CHECKPOINT_NAME, train_resumable

__all__ = [
    "CHECKPOINT_NAME",
    "DistillConfig",
    "EpochRecord",
    "FinetuneConfig",
    "FinetuneResult",
    "batchnorm_layers",
    "distillation_loss",
    "feature_loss",
    "finetune",
    "load_checkpoint",
    "recalibrate_batchnorm",
    "restore_rng",
    "rng_state",
    "save_checkpoint",
    "soft_kl",
    "train_distilled",
    "train_resumable",
]
