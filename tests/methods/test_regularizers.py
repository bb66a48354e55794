import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.granularity import build_groups, get_granularity
from prunekit.masks import apply_masks
from prunekit.methods import (
    bn_scale_penalty,
    bn_scale_scores,
    group_lasso_penalty,
    l1_penalty,
    with_penalty,
)


def _linear() -> nn.Linear:
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -4.0], [0.0, 1.0]]))
        layer.bias.copy_(torch.tensor([0.0, -2.0]))
    return layer


def test_l1_hand_worked_and_sees_masks() -> None:
    model = nn.Sequential(_linear())
    assert float(l1_penalty(model).detach()) == 8.0
    apply_masks(model, {"0.weight": torch.tensor([[1.0, 0.0], [1.0, 1.0]])})
    assert float(l1_penalty(model).detach()) == 4.0


def test_group_lasso_over_channel_groups() -> None:
    model = nn.Sequential(_linear())
    groups = build_groups(model, get_granularity("channel"))
    # channel 0: sqrt(9 + 16 + 0) = 5; channel 1: sqrt(0 + 1 + 4) = sqrt(5)
    assert float(group_lasso_penalty(model, groups)) == pytest.approx(5 + 5**0.5)


def test_network_slimming_penalty_and_scores() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1]))
    assert float(bn_scale_penalty(model)) == pytest.approx(2.6)
    from prunekit.graph import build_structural_groups

    groups = build_structural_groups(model, torch.randn(1, 1, 4, 4))
    scores = bn_scale_scores(model, groups)
    (values,) = scores.values()
    assert values.tolist() == pytest.approx([0.5, 2.0, 0.1])


def test_with_penalty_adds_strength_times_penalty() -> None:
    model = nn.Sequential(_linear())
    loss = with_penalty(l1_penalty, model, 0.5)
    out, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert float(loss(out, y)) == pytest.approx(float(F.cross_entropy(out, y)) + 4.0)
