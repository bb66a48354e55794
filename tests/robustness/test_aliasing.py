"""Modules registered under two names and tied weights: the user's model is never changed, and
a shared module or parameter gets one decision (or a clear refusal)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import prunekit
from prunekit.errors import PrunekitError
from prunekit.graph.tracer import trace


class AliasedConv(nn.Module):
    """One conv registered as ``a`` and ``b``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.b = self.a
        self.c = nn.Conv2d(8, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(torch.relu(self.bn(self.a(x))))


def shared_bn_sequential() -> nn.Sequential:
    """One BatchNorm used at two places of a Sequential (indices 1 and 4)."""
    bn = nn.BatchNorm2d(8)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn, nn.ReLU(), nn.Conv2d(8, 8, 1), bn)


MODELS: dict[str, Callable[[], nn.Module]] = {
    "aliased_conv": AliasedConv,
    "shared_bn": shared_bn_sequential,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trace_leaves_aliased_model_unchanged(name: str, state_of: Any) -> None:
    model = MODELS[name]()
    before = state_of(model)
    trace(model, torch.randn(2, 3, 6, 6))
    assert state_of(model) == before


@pytest.mark.parametrize("name", sorted(MODELS))
def test_prune_leaves_aliased_model_unchanged(name: str, state_of: Any) -> None:
    model = MODELS[name]()
    x = torch.randn(2, 3, 6, 6)
    expected = model.eval()(x)
    model.train()
    before = state_of(model)
    with contextlib.suppress(PrunekitError):
        prunekit.prune(model, x, granularity="channel", sparsity=0.5)
    assert state_of(model) == before
    assert torch.equal(model.eval()(x), expected)


def test_aliased_conv_gets_one_decision() -> None:
    """``a`` and ``b`` are one conv: it shrinks once and both names still point at it."""
    result = prunekit.prune(AliasedConv(), torch.randn(2, 3, 6, 6), granularity="channel",
                            sparsity=0.5)  # fmt: skip
    pruned = result.model
    assert pruned.a is pruned.b
    assert pruned.a.out_channels == 4
    assert pruned.bn.num_features == 4
    assert pruned.c.in_channels == 4


def test_shared_batchnorm_couples_both_convs() -> None:
    """A BatchNorm at two places ties the two convs feeding it: one group, one width."""
    bn = nn.BatchNorm2d(8)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn, nn.ReLU(), nn.Conv2d(8, 8, 1), bn,
                          nn.ReLU(), nn.Conv2d(8, 3, 1))  # fmt: skip
    result = prunekit.prune(model, torch.randn(2, 3, 6, 6), granularity="channel", sparsity=0.5)
    pruned = result.model
    assert pruned[1] is pruned[4]
    assert [pruned[0].out_channels, pruned[1].num_features, pruned[3].out_channels] == [4, 4, 4]
    assert len(result.groups) == 1
