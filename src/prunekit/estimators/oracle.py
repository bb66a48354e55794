"""The loss-change oracle: remove each unit, measure the loss change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.core.groups import Group, Scores, group_tensors
from prunekit.errors import ConfigError
from prunekit.estimators.base import Estimator
from prunekit.estimators.collect import mean_loss
from prunekit.estimators.data import ScoringData


@dataclass(frozen=True)
class Oracle(Estimator):
    """True loss change ``L(without unit) - L`` on the scoring batches, by brute force: every
    tensor slice of the unit is zeroed (as a mask would) and the loss re-measured (the
    "oracle" ranking of Molchanov et al. 2017/2019). Exact and expensive: one pass over the data
    per unit. With ``sample=k`` only ``k`` random units per group are measured and the others are
    NaN (for grading other estimators; such scores cannot drive a selection)."""

    name: ClassVar[str] = "oracle"
    summary: ClassVar[str] = "true loss change when the unit is removed (brute force)"
    needs_data: ClassVar[bool] = True
    partial: ClassVar[bool] = True
    sample: int | None = None
    max_units: int = 20_000
    seed: int = 0

    def _units(self, group: Group, generator: torch.Generator) -> Tensor:
        if self.sample is None or self.sample >= group.n_units:
            return torch.arange(group.n_units)
        return torch.randperm(group.n_units, generator=generator)[: self.sample].sort().values

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        generator = torch.Generator().manual_seed(self.seed)
        chosen = {g.name: self._units(g, generator) for g in groups}
        total = sum(int(u.numel()) for u in chosen.values())
        if total > self.max_units:
            raise ConfigError(
                f"estimator 'oracle' would measure {total} units (one pass over the data each); "
                f"pass sample=<units per group> or raise max_units"
            )
        tensors = group_tensors(model, groups)
        base = mean_loss(model, data, {})
        scores: Scores = {}
        bar = tqdm(
            total=total, desc=self.name, leave=False, disable=None if data.progress else True
        )
        for group in groups:
            s = torch.full((group.n_units,), float("nan"))
            for unit in chosen[group.name].tolist():
                keep = torch.ones(group.n_units)
                keep[unit] = 0.0
                removed = {n: tensors[n] * m.to(tensors[n]) for n, m in group.expand(keep).items()}
                s[unit] = mean_loss(model, data, removed) - base
                bar.update(1)
            scores[group.name] = s
        bar.close()
        return scores
