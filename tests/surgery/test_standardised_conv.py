"""Weight-standardised convolutions (timm StdConv2d / ScaledStdConv2d, NF-ResNets) prune and
verify: their output channels exactly, their input channels against the standardisation over
the kept inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit
from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()
layers = pytest.importorskip("timm.layers")


@pytest.mark.parametrize("conv", ["StdConv2d", "ScaledStdConv2d"])
def test_standardised_convs_prune_and_verify(conv: str) -> None:
    torch.manual_seed(0)
    make = getattr(layers, conv)
    model = nn.Sequential(
        make(3, 16, 3, padding=1), nn.ReLU(), make(16, 16, 3, padding=1), nn.ReLU(),
        make(16, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(2, 3, 16, 16)
    result = prunekit.prune(
        model, example, granularity="channel", sparsity=0.5, estimator="magnitude"
    )
    assert result.verification is not None and result.verification.complete
    assert result.model[2].weight.shape[:2] == (8, 8)  # both sides of the middle conv cut
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
