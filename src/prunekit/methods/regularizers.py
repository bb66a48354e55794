"""Sparsity-inducing penalties, added to the training loss.

``l1_penalty`` (Han et al. 2015 train with L1/L2 before pruning), ``group_lasso_penalty`` over
any groups (Wen et al. 2016, "Learning Structured Sparsity"; with structural groups every coupled
slice of a channel is driven to zero together) and ``bn_scale_penalty`` (network slimming, Liu et
al. 2017: L1 on BatchNorm scales, then prune the channels with the smallest scales, scored by
:func:`bn_scale_scores`). :func:`with_penalty` wraps a loss for :func:`prunekit.train.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fnmatch import fnmatch

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.adapters import batchnorm_layers
from prunekit.core.groups import Group, Scores
from prunekit.errors import ConfigError
from prunekit.estimators.weights import BNScale
from prunekit.train.loop import LossFn

Penalty = Callable[[nn.Module], Tensor]


def _named_tensors(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter by the name a forward pass reads it under (masked values included)."""
    named: dict[str, Tensor] = {}
    for module_name, module in model.named_modules():
        for attr, _ in module.named_parameters(recurse=False):
            named[f"{module_name}.{attr}" if module_name else attr] = getattr(module, attr)
        for attr in getattr(module, "parametrizations", {}):
            named[f"{module_name}.{attr}" if module_name else attr] = getattr(module, attr)
    return {k: v for k, v in named.items() if ".parametrizations." not in f".{k}"}


def l1_penalty(model: nn.Module, include: Sequence[str] = ("*.weight", "weight")) -> Tensor:
    """Sum of ``|w|`` over the parameters whose names match ``include`` (glob patterns)."""
    terms = [
        t.abs().sum()
        for n, t in _named_tensors(model).items()
        if any(fnmatch(n, p) for p in include)
    ]
    if not terms:
        raise ConfigError(f"l1_penalty: no parameter matches {list(include)}")
    return torch.stack(terms).sum()


def group_lasso_penalty(model: nn.Module, groups: Sequence[Group]) -> Tensor:
    """``sum_units sqrt(sum of squares of every element of the unit, over all members)``."""
    tensors = _named_tensors(model)
    terms = []
    for group in groups:
        squares = group.reduce(
            {m.tensor: tensors[m.tensor] ** 2 for m in group.members if m.tensor in tensors}
        )
        terms.append(torch.sqrt(squares + 1e-12).sum())
    return torch.stack(terms).sum()


def bn_scale_penalty(model: nn.Module) -> Tensor:
    """Sum of ``|gamma|`` over every affine BatchNorm layer (network slimming)."""
    layers = batchnorm_layers(model, affine=True)
    if not layers:
        raise ConfigError("bn_scale_penalty: the model has no affine BatchNorm layer")
    return torch.stack([_bn_weight(m).abs().sum() for _, m in layers]).sum()


def _bn_weight(module: nn.Module) -> Tensor:
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight


def bn_scale_scores(model: nn.Module, groups: Sequence[Group]) -> Scores:
    """One score per unit: ``|gamma|`` of the BatchNorm entries in the group (summed if there
    are several); the ``bn_scale`` estimator (:class:`prunekit.estimators.BNScale`)."""
    return BNScale().score(model, groups)


def with_penalty(
    penalty: Penalty, model: nn.Module, strength: float, loss_fn: LossFn = F.cross_entropy
) -> LossFn:
    """``loss_fn(outputs, targets) + strength * penalty(model)``, a loss for ``train``."""
    if not strength >= 0:
        raise ConfigError(f"strength must be >= 0, got {strength!r}")

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        return loss_fn(outputs, targets) + strength * penalty(model)

    return loss
