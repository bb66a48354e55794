"""Activation-based estimators of output units (neurons, channels): mean activation, APoZ and
mutual information with the labels. They need groups whose units appear in a module's output
(``Group.output``), i.e. channel granularity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.core.groups import Group, Scores
from prunekit.errors import ConfigError, DataError, ScoreError
from prunekit.estimators.base import UNITS, Estimator
from prunekit.estimators.collect import ChannelStats, channel_statistics
from prunekit.estimators.data import ScoringData


def _collect(
    model: nn.Module, groups: Sequence[Group], data: ScoringData, desc: str
) -> tuple[dict[str, ChannelStats], Tensor, Tensor]:
    outputs = {g.name: g.output for g in groups if g.output is not None}
    stats, predictions, targets = channel_statistics(model, data, outputs, desc)
    for group in groups:
        channels = stats[group.name].mean.shape[1]
        if channels != group.n_units:
            raise ScoreError(
                f"group {group.name!r}: the output of {group.output} has {channels} channels "
                f"but the group has {group.n_units} units"
            )
    return stats, predictions, targets


@dataclass(frozen=True)
class _OutputStatistic(Estimator):
    """An estimator whose score is one summary of each unit's output activations."""

    needs_data: ClassVar[bool] = True
    output_units_only: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({UNITS})

    def statistic(self, stats: ChannelStats) -> Tensor:
        """One score per unit from the ``[samples, units]`` summaries."""
        raise NotImplementedError

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        stats, _, _ = _collect(model, groups, data, self.name)
        return {g.name: self.statistic(stats[g.name]) for g in groups}


@dataclass(frozen=True)
class Activation(_OutputStatistic):
    """Mean absolute activation of a unit over samples and positions (the layer's output before
    any following non-linearity); low mean activation marks a unit whose removal changes little
    (Molchanov et al. 2017, "Pruning Convolutional Neural Networks for Resource Efficient
    Inference", mean-activation criterion)."""

    name: ClassVar[str] = "activation"
    summary: ClassVar[str] = "mean |activation| of a neuron/channel"

    def statistic(self, stats: ChannelStats) -> Tensor:
        return stats.abs_mean.mean(0)


@dataclass(frozen=True)
class APoZ(_OutputStatistic):
    """One minus the Average Percentage of Zeros of a unit's activation (Hu et al. 2016,
    "Network Trimming"). Measured on the layer's output as the fraction of entries ``<= 0``,
    which equals the fraction of zeros after a following ReLU."""

    name: ClassVar[str] = "apoz"
    summary: ClassVar[str] = "1 - fraction of zero (post-ReLU) activations"

    def statistic(self, stats: ChannelStats) -> Tensor:
        return 1.0 - stats.nonpositive.mean(0)


def discrete_mutual_information(codes: Tensor, labels: Tensor, bins: int) -> Tensor:
    """Plug-in mutual information (nats) between each column of ``codes`` (``[samples, units]``,
    integers in ``[0, bins)``) and integer ``labels`` (``[samples]``)."""
    n_classes = int(labels.max()) + 1
    onehot_codes = F.one_hot(codes, bins).float()  # [S, U, B]
    onehot_labels = F.one_hot(labels, n_classes).float()  # [S, K]
    joint = torch.einsum("sub,sk->ubk", onehot_codes, onehot_labels) / codes.shape[0]
    p_code = joint.sum(-1, keepdim=True)
    p_label = joint.sum(-2, keepdim=True)
    ratio = joint / (p_code * p_label).clamp_min(1e-30)
    terms = torch.where(joint > 0, joint * ratio.clamp_min(1e-30).log(), torch.zeros_like(joint))
    return terms.sum(dim=(-1, -2)).clamp_min(0.0)


def quantile_codes(values: Tensor, bins: int) -> Tensor:
    """Equal-frequency discretisation of each column of ``values`` into ``bins`` codes."""
    qs = torch.linspace(0, 1, bins + 1, dtype=values.dtype)[1:-1]
    edges = torch.quantile(values, qs, dim=0).T.contiguous()  # [units, bins - 1]
    codes = torch.searchsorted(edges, values.T.contiguous(), right=True).T
    return codes.clamp(0, bins - 1)


@dataclass(frozen=True)
class MutualInfo(Estimator):
    """Mutual information between a unit's activation and the labels (or the model's own
    predictions). Each sample's activation is averaged over positions, discretised into ``bins``
    equal-frequency bins per unit, and the plug-in estimate ``sum p(a,y) log p(a,y)/(p(a)p(y))``
    is computed from the joint histogram (in nats). The plug-in estimate is biased upwards by about
    ``(bins - 1)(classes - 1) / (2 N)`` for ``N`` samples, equally for every unit, so rankings are
    unaffected; use at least a few hundred samples. In the spirit of information-theoretic
    channel pruning (e.g. Ganesh et al. 2020, "MINT")."""

    name: ClassVar[str] = "mutual_info"
    summary: ClassVar[str] = "mutual information of activation and labels (binned)"
    needs_data: ClassVar[bool] = True
    output_units_only: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({UNITS})
    bins: int = 8
    target: Literal["labels", "predictions"] = "labels"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bins < 2:
            raise ConfigError(f"estimator 'mutual_info': bins must be >= 2, got {self.bins}")
        if self.target not in ("labels", "predictions"):
            raise ConfigError(
                f"estimator 'mutual_info': target must be 'labels' or 'predictions', "
                f"got {self.target!r}"
            )

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        stats, predictions, targets = _collect(model, groups, data, self.name)
        labels = predictions if self.target == "predictions" else targets
        if labels.is_floating_point() or labels.numel() != predictions.numel() or labels.min() < 0:
            raise DataError(
                "estimator 'mutual_info' with target='labels' needs integer class labels, one "
                "per output row; use target='predictions' for other tasks"
            )
        bins = min(self.bins, max(2, int(math.sqrt(labels.numel()))))
        return {
            g.name: discrete_mutual_information(
                quantile_codes(stats[g.name].mean, bins), labels.long(), bins
            )
            for g in groups
        }
