"""BatchNorm statistics recalibration: the cheapest recovery after pruning.

Removing channels changes the distribution of every later layer's input, so the running mean and
variance stored in BatchNorm layers no longer match and accuracy can fall to chance. A few
forward passes over training data, with the statistics reset and accumulated as a plain
average, fix them without touching a single weight (Li et al. 2020, "EagleEye", use exactly
this to rank pruned candidates).

It sits below surgery (which recalibrates after cutting channels or blocks) and is re-exported by
:mod:`prunekit.recovery`; what counts as a BatchNorm is :func:`prunekit.adapters.is_batchnorm`.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch
from torch import nn

from prunekit.adapters import BATCHNORM_TYPES, is_batchnorm
from prunekit.core.modes import module_mode
from prunekit.errors import DataError
from prunekit.train import batches_on, device_of


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's BatchNorm layers that track running statistics."""
    return [(name, m) for name, m in model.named_modules() if is_batchnorm(m, tracking=True)]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader: Iterable[Any], *, max_batches: int | None = 50
) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance on ``loader``.

    The statistics are reset and averaged over the first ``max_batches`` batches (cumulative
    average, ``momentum=None``); every other module runs in eval mode (no dropout), no
    parameter changes, and each layer's momentum and every module's mode are restored after.
    Returns the number of samples seen; a model without BatchNorm is left as it is (returns 0).
    """
    layers: list[nn.modules.batchnorm._BatchNorm] = [
        m for _, m in batchnorm_layers(model) if isinstance(m, BATCHNORM_TYPES)
    ]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    device = device_of(model)
    seen = 0
    with module_mode(model, training=False):
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        try:
            for inputs, targets in islice(batches_on(loader, device), max_batches):
                model(inputs)
                seen += len(targets)
        finally:
            for m, momentum in zip(layers, momenta, strict=True):
                m.momentum = momentum
    if seen == 0:
        raise DataError("recalibrate_batchnorm: the loader yielded no batches")
    return seen
