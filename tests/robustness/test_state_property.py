"""Property: whatever prunekit.prune does with a small random net (prune it or refuse with a
prunekit error), the user's model comes back exactly as it was.

Nets are Conv/BN/ReLU stacks with a Linear head, optionally with a module registered under a
second name, one BatchNorm used at two places, tied conv weights, float64 parameters, frozen
parameters and a mix of train/eval flags.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import prunekit
from prunekit.errors import PrunekitError


class RandomNet(nn.Module):
    def __init__(self, body: nn.Sequential, width: int) -> None:
        super().__init__()
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.body(x)).flatten(1))


@st.composite
def random_nets(draw: st.DrawFn) -> nn.Module:
    width = draw(st.integers(2, 6))
    n_blocks = draw(st.integers(1, 3))
    share_bn = draw(st.booleans())
    layers: list[nn.Module] = []
    convs: list[nn.Conv2d] = []
    first_bn: nn.BatchNorm2d | None = None
    for i in range(n_blocks):
        kernel = draw(st.sampled_from([1, 3]))
        conv = nn.Conv2d(3 if i == 0 else width, width, kernel, padding=kernel // 2)
        layers.append(conv)
        convs.append(conv)
        if draw(st.booleans()):
            bn = first_bn if (share_bn and first_bn is not None) else nn.BatchNorm2d(width)
            first_bn = first_bn or bn
            layers.append(bn)
        if draw(st.booleans()):
            layers.append(nn.ReLU())
    net = RandomNet(nn.Sequential(*layers), width)
    tieable = [c for c in convs[1:] if c.weight.shape == convs[-1].weight.shape]
    if len(tieable) >= 2 and draw(st.booleans()):
        tieable[0].weight = tieable[-1].weight
    if draw(st.booleans()):
        net.alias = layers[draw(st.integers(0, len(layers) - 1))]
    if draw(st.booleans()):
        net.double()
    for p in net.parameters():
        p.requires_grad_(draw(st.booleans()))
    for m in net.modules():
        m.training = draw(st.booleans())
    return net


def _dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    net=random_nets(),
    sparsity=st.sampled_from([0.25, 0.5, 0.9]),
    granularity=st.sampled_from(["channel", "unstructured"]),
)
def test_prune_never_changes_the_users_model(
    net: nn.Module, sparsity: float, granularity: str, state_of: Any
) -> None:
    x = torch.randn(2, 3, 5, 5, dtype=_dtype(net))
    before = state_of(net)
    with contextlib.suppress(PrunekitError):
        prunekit.prune(net, x, granularity=granularity, sparsity=sparsity)
    assert state_of(net) == before
