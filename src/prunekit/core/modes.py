"""Modes for a block of code: train/eval with every submodule's own flag given back afterwards,
and composite (unfused) attention.

``model.train(flag)`` sets the flag on every submodule; a user's model may have some submodules
deliberately in another mode (e.g. frozen BatchNorm in eval during training), so restoring with
``model.train(old)`` would lose that. These context managers save and restore each flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def module_mode(model: nn.Module, *, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train (``training=True``) or eval mode for the block."""
    saved = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, flag in saved:
            module.training = flag


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block."""
    with module_mode(model, training=False):
        yield model


@contextmanager
def composite_attention() -> Iterator[None]:
    """Turn off ``nn.MultiheadAttention``'s fused inference path while tracing, so attention
    runs as projections + SDPA, whose units the rules map (the fused op hides them)."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
