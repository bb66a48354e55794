"""Gradient-based estimators: gradient magnitude, first-order Taylor, Fisher, Hessian (OBD)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from prunekit.core.groups import Group, Scores, get_tensor
from prunekit.errors import ConfigError
from prunekit.estimators.base import Estimator, scored_tensor_names
from prunekit.estimators.collect import batch_gradients, hessian_diagonal
from prunekit.estimators.data import ScoringData

PerBatch = Callable[[Group, dict[str, Tensor], dict[str, Tensor]], Tensor]
"""A per-batch unit statistic: ``(group, tensor values, loss gradients) -> Tensor[n_units]``."""


def _mean_over_batches(
    model: nn.Module, groups: Sequence[Group], data: ScoringData, desc: str, per_batch: PerBatch
) -> Scores:
    """Average ``per_batch`` over the batches of ``data``, for every group."""
    totals: dict[str, Tensor] = {}
    count = 0
    for step in batch_gradients(model, data, scored_tensor_names(groups), desc):
        for group in groups:
            value = per_batch(group, step.values, step.grads)
            totals[group.name] = totals[group.name] + value if group.name in totals else value
        count += 1
    return {name: total / count for name, total in totals.items()}


@dataclass(frozen=True)
class Gradient(Estimator):
    """Mean absolute loss gradient ``E_batches |dL/dw|`` reduced over a unit."""

    name: ClassVar[str] = "gradient"
    summary: ClassVar[str] = "mean |dL/dw| over batches"
    needs_data: ClassVar[bool] = True

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        return _mean_over_batches(
            model,
            groups,
            data,
            self.name,
            lambda g, v, gr: g.reduce({n: t.abs() for n, t in gr.items()}, self.reduction),
        )


@dataclass(frozen=True)
class Taylor(Estimator):
    """First-order Taylor importance (Molchanov et al. 2019, "Importance Estimation for Neural
    Network Pruning", CVPR): per batch ``(sum_{w in unit} g * w)^2``, averaged over batches.
    The loss change of removing a unit is approximated by its first-order term, squared so that
    both signs count; for a single weight this is ``(g * w)^2``."""

    name: ClassVar[str] = "taylor"
    summary: ClassVar[str] = "(sum over unit of g*w)^2, averaged over batches"
    needs_data: ClassVar[bool] = True

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None

        def per_batch(g: Group, v: dict[str, Tensor], gr: dict[str, Tensor]) -> Tensor:
            products = {n: gr[n] * v[n] for n in gr}
            return g.reduce(products, self.reduction).pow(2)

        return _mean_over_batches(model, groups, data, self.name, per_batch)


@dataclass(frozen=True)
class Fisher(Estimator):
    """Diagonal empirical-Fisher saliency ``1/2 * F_ii * w_i^2`` with ``F_ii = E_batches g_i^2``
    (the Fisher as a Hessian approximation in Optimal Brain Damage; Theis et al. 2018,
    "Faster gaze prediction with dense networks and Fisher pruning"). Batch gradients are used,
    not per-sample gradients, so ``F`` is the Fisher of the batch-mean loss."""

    name: ClassVar[str] = "fisher"
    summary: ClassVar[str] = "1/2 E[g^2] w^2 (empirical Fisher diagonal)"
    needs_data: ClassVar[bool] = True

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        fisher: dict[str, Tensor] = {}
        values: dict[str, Tensor] = {}
        count = 0
        for step in batch_gradients(model, data, scored_tensor_names(groups), self.name):
            for n, g in step.grads.items():
                fisher[n] = fisher[n] + g.pow(2) if n in fisher else g.pow(2)
            values = step.values
            count += 1
        saliency = {n: 0.5 * (f / count) * values[n].pow(2) for n, f in fisher.items()}
        return {g.name: g.reduce(saliency, self.reduction) for g in groups}


@dataclass(frozen=True)
class Hessian(Estimator):
    """Optimal Brain Damage saliency ``1/2 * h_ii * w_i^2`` (LeCun, Denker & Solla 1990) with the
    Hessian diagonal from Hutchinson's estimator ``E[z * (H z)]``, Rademacher ``z``, computed with
    Hessian-vector products (``samples`` probes per batch). The estimate's noise falls as
    ``1 / sqrt(samples * batches)``: on a digits MLP its Spearman correlation with the loss-change
    oracle at channel granularity rose from 0.36 (1 probe) to 0.44 (8) and 0.67 (32), so the
    default is 8. The estimate of ``h_ii`` can be negative; scores are not clamped."""

    name: ClassVar[str] = "hessian"
    summary: ClassVar[str] = "1/2 h_ii w^2, Hutchinson diagonal (OBD)"
    needs_data: ClassVar[bool] = True
    samples: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples < 1:
            raise ConfigError(f"estimator 'hessian': samples must be >= 1, got {self.samples}")

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        names = scored_tensor_names(groups)
        diag = hessian_diagonal(
            model,
            data,
            names,
            samples=self.samples,
            generator=torch.Generator().manual_seed(self.seed),
            desc=self.name,
        )
        weights = {n: get_tensor(model, n).detach().float() for n in names}
        saliency = {n: 0.5 * diag[n] * weights[n].pow(2) for n in names}
        return {g.name: g.reduce(saliency, self.reduction) for g in groups}
