"""Data-free estimators: weight magnitude, BatchNorm scale and the random control."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from prunekit.adapters import is_batchnorm
from prunekit.core.groups import Group, Member, Scores, get_tensor, group_tensors
from prunekit.errors import ConfigError
from prunekit.estimators.base import BLOCKS, LAYERWISE, UNITS, Estimator
from prunekit.estimators.data import ScoringData


@dataclass(frozen=True)
class Magnitude(Estimator):
    """``|w|^p`` reduced over a unit: ``p=1`` with ``sum`` is the L1 norm of a filter
    (Li et al. 2017, "Pruning Filters for Efficient ConvNets"); at element granularity it is
    magnitude pruning (Han et al. 2015, "Learning both Weights and Connections")."""

    name: ClassVar[str] = "magnitude"
    capabilities: ClassVar[frozenset[str]] = frozenset({UNITS, BLOCKS, LAYERWISE})
    """Layer-wise too, as :class:`prunekit.estimators.layerwise.Magnitude`."""
    summary: ClassVar[str] = "|w|^p summed over a unit (L1/L2 norms)"
    p: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.p > 0:
            raise ConfigError(f"estimator 'magnitude': p must be positive, got {self.p}")

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        if self.reduction == "max":
            values = {n: self._power(t) for n, t in group_tensors(model, groups).items()}
            return {g.name: g.reduce(values, "max") for g in groups}
        return self._sums(model, groups)

    def _sums(self, model: nn.Module, groups: Sequence[Group]) -> Scores:
        """``sum`` / ``mean`` of ``|w|^p`` per unit, one tensor at a time: each tensor's
        ``|w|^p`` is written into one reused buffer and reduced for every group that has it
        (structural groups score every weight of a model; fresh copies cost page faults)."""
        members: dict[str, list[tuple[Group, Member]]] = {}
        for group in groups:
            for member in group.members:
                if member.scored:
                    members.setdefault(member.tensor, []).append((group, member))
        totals: dict[str, torch.Tensor] = {}
        buffer = torch.empty(0)
        for name, users in members.items():
            tensor = get_tensor(model, name).detach()
            buffer = buffer.resize_(tensor.numel()) if buffer.numel() < tensor.numel() else buffer
            values = torch.abs(tensor.float(), out=buffer[: tensor.numel()].view(tensor.shape))
            if self.p != 1:
                values.pow_(self.p)
            for group, member in users:
                part = member.view.reduce(values, "sum")
                if part.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr():
                    part = part.clone()  # a view of the buffer (element units): keep a copy
                totals[group.name] = totals[group.name] + part if group.name in totals else part
        scores: Scores = {}
        for group in groups:
            if group.name not in totals:
                names = group.tensor_names()
                raise KeyError(f"group {group.name!r}: no scored member among {names}")
            scores[group.name] = totals[group.name]
            if self.reduction == "mean":
                counts = sum(m.view.counts() for m in group.members if m.scored)
                assert isinstance(counts, torch.Tensor)
                scores[group.name] = totals[group.name] / counts.to(totals[group.name])
        return scores

    def _power(self, tensor: torch.Tensor) -> torch.Tensor:
        values = tensor.detach().float().abs()  # a new tensor: the in-place power below is safe
        return values if self.p == 1 else values.pow_(self.p)


@dataclass(frozen=True)
class BNScale(Estimator):
    """``|gamma|`` of the BatchNorm entries of a channel (summed when a coupled group holds
    several): the channel importance of network slimming (Liu et al. 2017, "Learning Efficient
    Convolutional Networks through Network Slimming"), usually after training with
    :func:`prunekit.methods.bn_scale_penalty`. Scores output channels only; a group without an
    affine BatchNorm entry is an error naming it (its channels have no scale to rank by)."""

    name: ClassVar[str] = "bn_scale"
    summary: ClassVar[str] = "|BatchNorm scale| of a channel (network slimming)"
    output_units_only: ClassVar[bool] = True
    structural_only: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({UNITS})

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        scales = {
            f"{name}.weight"
            for name, module in model.named_modules()
            if is_batchnorm(module, affine=True)
        }
        scores: Scores = {}
        for group in groups:
            members = [m for m in group.members if m.tensor in scales]
            if not members:
                raise ConfigError(
                    f"estimator 'bn_scale': group {group.name!r} has no BatchNorm scale to score "
                    f"(tensors: {group.tensor_names()}); use a model with BatchNorm after these "
                    "channels or another estimator"
                )
            parts = [
                m.view.reduce(get_tensor(model, m.tensor).detach().abs().float(), self.reduction)
                for m in members
            ]
            scores[group.name] = torch.stack(parts).sum(dim=0)
        return scores


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
