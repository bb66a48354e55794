"""Knowledge distillation losses (Hinton et al. 2015; FitNets, Romero et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from prunekit.errors import ConfigError


@dataclass(frozen=True)
class DistillConfig:
    """``alpha`` weighs the soft (teacher) term against the hard (label) term; ``temperature``
    softens both distributions; ``feature_weight`` weighs intermediate feature matching."""

    alpha: float = 0.9
    temperature: float = 4.0
    feature_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature!r}")
        if not self.feature_weight >= 0:
            raise ConfigError(f"feature_weight must be >= 0, got {self.feature_weight!r}")


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch. The ``T^2``
    keeps the gradient scale independent of ``T`` (Hinton et al. 2015)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    config: DistillConfig | None = None,
) -> Tensor:
    """``alpha * soft_kl + (1 - alpha) * cross_entropy(student, targets)``."""
    config = config or DistillConfig()
    soft = soft_kl(student_logits, teacher_logits.detach(), config.temperature)
    if config.alpha == 1.0:
        return soft
    hard = F.cross_entropy(student_logits, targets)
    return config.alpha * soft + (1.0 - config.alpha) * hard


def feature_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error between a student feature map and the teacher's (same shape; a
    pruned student is first projected by an adapter, see :mod:`prunekit.recovery.finetune`)."""
    if student.shape != teacher.shape:
        raise ConfigError(
            f"feature shapes differ: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}"
        )
    return F.mse_loss(student, teacher.detach())
