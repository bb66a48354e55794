"""Gradual channel pruning on structural groups inside a training loop, then physical removal:
on torchvision's ResNet-18 (residual coupling, BatchNorm, downsampling shortcuts) the smaller
model computes what the masked one computes, and the schedule's final sparsity is reached."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.graph import build_structural_groups
from prunekit.masks import masks_of
from prunekit.schedules import Polynomial, Stepper, remove_masked_units, removed_units
from prunekit.train import train


def resnet18() -> nn.Module:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    return models.resnet18(weights=None, num_classes=5)


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 5, (4,), generator=gen))
        for _ in range(n)
    ]


@pytest.mark.parametrize("estimator", ["magnitude", "bn-scale"])
def test_gradual_channels_then_surgery_on_resnet18(estimator: str) -> None:
    model = resnet18()
    x = torch.randn(2, 3, 32, 32)
    groups = build_structural_groups(model, x)
    schedule = Polynomial(0.5, begin_step=0, end=6, frequency=2)
    config = {
        "granularity": "channel",
        "estimator": estimator,
        "scope": "global",
        "normalize": "mean",
    }
    stepper = Stepper(schedule, config, groups=groups)
    train(model, batches(8), epochs=1, lr=1e-3, progress=False, on_step=stepper)

    assert stepper.done and [s for s, _ in stepper.history] == [2, 4, 6]
    removed = removed_units(model, groups)
    total = sum(g.n_units for g in groups)
    assert sum(int(r.sum()) for r in removed.values()) == round(0.5 * total)

    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, plan = remove_masked_units(model, groups)
    assert masks_of(pruned) == {} and masks_of(model)  # the masked model is left as it was
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(p.numel() for p in pruned.parameters()) < 0.5 * sum(
        p.numel() for p in model.parameters()
    )
    assert plan.groups  # the plan records every cut, for rebuilding on load
    model.eval(), pruned.eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-4, atol=1e-5)
