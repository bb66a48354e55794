"""Data-free estimators: weight magnitude and the random control."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from prunekit.core.groups import Group, Scores, group_tensors
from prunekit.errors import ConfigError
from prunekit.estimators.base import Estimator
from prunekit.estimators.data import ScoringData


@dataclass(frozen=True)
class Magnitude(Estimator):
    """``|w|^p`` reduced over a unit: ``p=1`` with ``sum`` is the L1 norm of a filter
    (Li et al. 2017, "Pruning Filters for Efficient ConvNets"); at element granularity it is
    magnitude pruning (Han et al. 2015, "Learning both Weights and Connections")."""

    name: ClassVar[str] = "magnitude"
    summary: ClassVar[str] = "|w|^p summed over a unit (L1/L2 norms)"
    p: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.p > 0:
            raise ConfigError(f"estimator 'magnitude': p must be positive, got {self.p}")

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        values = {n: self._power(t.detach()) for n, t in group_tensors(model, groups).items()}
        return {g.name: g.reduce(values, self.reduction) for g in groups}

    def _power(self, tensor: torch.Tensor) -> torch.Tensor:
        values = tensor.float().abs()  # a new tensor: the in-place power below is safe
        return values if self.p == 1 else values.pow_(self.p)


@dataclass(frozen=True)
class Random(Estimator):
    """Uniform random scores: the control every criterion must beat. Each group's scores depend
    only on ``seed`` and the group name, so they are reproducible and independent of order."""

    name: ClassVar[str] = "random"
    summary: ClassVar[str] = "uniform random scores (control)"
    seed: int = 0

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        scores: Scores = {}
        for group in groups:
            gen = torch.Generator().manual_seed(
                self.seed * 1_000_003 + zlib.crc32(group.name.encode())
            )
            scores[group.name] = torch.rand(group.n_units, generator=gen)
        return scores
