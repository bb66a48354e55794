"""The loss-change oracle: remove each unit, measure the loss change."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.core.groups import Group, Scores, group_tensors
from prunekit.errors import ConfigError
from prunekit.estimators.base import Estimator
from prunekit.estimators.collect import mean_loss, mean_losses
from prunekit.estimators.data import ScoringData


@dataclass(frozen=True)
class Oracle(Estimator):
    """True loss change ``L(without unit) - L`` on the scoring batches, by brute force: every
    tensor slice of the unit is zeroed (as a mask would) and the loss re-measured (the
    "oracle" ranking of Molchanov et al. 2017/2019). Exact and expensive: one pass over the data
    per unit. With ``sample=k`` only ``k`` random units per group are measured and the others are
    NaN (for grading other estimators; such scores cannot drive a selection).

    ``batch_units`` units are measured in one vectorised pass (``torch.func.vmap``); a model that
    cannot be vectorised is measured one unit at a time instead, with a warning, and the same
    result."""

    name: ClassVar[str] = "oracle"
    summary: ClassVar[str] = "true loss change when the unit is removed (brute force)"
    needs_data: ClassVar[bool] = True
    partial: ClassVar[bool] = True
    sample: int | None = None
    max_units: int = 20_000
    seed: int = 0
    batch_units: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_units < 1:
            raise ConfigError(
                f"estimator 'oracle': batch_units must be >= 1, got {self.batch_units}"
            )

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
        base: float | None = None  # the unchanged loss, for unit-by-unit measurement
        bar = tqdm(
            total=total, desc=self.name, leave=False, disable=None if data.progress else True
        )
        scores: Scores = {}
        vectorise = self.batch_units > 1
        for group in groups:
            s = torch.full((group.n_units,), float("nan"))
            for chunk in torch.split(chosen[group.name], self.batch_units):
                stacked = _removal_stacks(group, tensors, chunk)
                losses = None
                if vectorise:
                    try:
                        losses = _vectorised_changes(model, data, stacked, tensors)
                    except Exception as err:  # any vmap failure: measure unit by unit
                        warnings.warn(
                            f"oracle: the model cannot be vectorised ({type(err).__name__}: "
                            f"{err}); measuring one unit at a time",
                            stacklevel=2,
                        )
                        vectorise = False
                if losses is None:
                    base = mean_loss(model, data, {}) if base is None else base
                    losses = torch.tensor(
                        [
                            mean_loss(model, data, {n: t[i] for n, t in stacked.items()}) - base
                            for i in range(len(chunk))
                        ]
                    )
                s[chunk] = losses.float()
                bar.update(len(chunk))
            scores[group.name] = s
        bar.close()
        return scores


def _vectorised_changes(
    model: nn.Module,
    data: ScoringData,
    stacked: Mapping[str, Tensor],
    tensors: Mapping[str, Tensor],
) -> Tensor:
    """Loss changes of the stacked variants, against an unchanged variant computed in the same
    vectorised pass (so a unit whose removal changes nothing scores exactly 0)."""
    with_base = {n: torch.cat([tensors[n].unsqueeze(0), t]) for n, t in stacked.items()}
    losses = mean_losses(model, data, with_base)
    return losses[1:] - losses[0]


def _removal_stacks(
    group: Group, tensors: Mapping[str, Tensor], units: Tensor
) -> dict[str, Tensor]:
    """For each member tensor, a ``[len(units), *shape]`` stack: copy ``i`` has unit
    ``units[i]`` zeroed, exactly as a mask would zero it."""
    keep = torch.ones(len(units), group.n_units)
    keep[torch.arange(len(units)), units] = 0.0
    per_unit = [group.expand(k) for k in keep]
    return {
        n: tensors[n].unsqueeze(0) * torch.stack([m[n] for m in per_unit]).to(tensors[n])
        for n in group.tensor_names()
    }
