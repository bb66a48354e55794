"""Optimizers by name, so recipes and the CLI can say ``optimizer: sgd``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.registry import Registry


class OptimizerFactory(Protocol):
    """Builds an optimizer from parameters and the shared settings (each uses what applies)."""

    def __call__(
        self,
        params: Iterable[nn.Parameter],
        *,
        lr: float,
        weight_decay: float,
        momentum: float,
    ) -> torch.optim.Optimizer: ...


def _adam(
    params: Iterable[nn.Parameter], *, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient; ignores momentum."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(
    params: Iterable[nn.Parameter], *, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019), decoupled weight decay; ignores momentum."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(
    params: Iterable[nn.Parameter], *, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """Stochastic gradient descent with heavy-ball momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
OPTIMIZERS.register("adam", _adam)
OPTIMIZERS.register("adamw", _adamw)
OPTIMIZERS.register("sgd", _sgd)


def make_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """The optimizer registered as ``name`` over ``model``'s trainable parameters."""
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr!r}")
    if not weight_decay >= 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
    factory = OPTIMIZERS.get(name)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters to optimize")
    return factory(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
