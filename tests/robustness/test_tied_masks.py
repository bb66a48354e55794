"""Tied weights in the masks path: a tensor shared by two layers gets one decision.

``fc2.weight`` is ``fc1.weight``: their channel groups are one group, a mask given for either
name masks the tensor wherever it is used, and baking the masks keeps the outputs and the tie.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import prunekit
from prunekit.errors import ConfigError
from prunekit.granularity import Channel, Element, build_groups
from prunekit.masks import apply_masks, bake_masks

W = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.5, 1.0, -1.0, 2.0], [2.0, 0.5, 1.0, -1.0],
                  [-1.0, 1.5, 2.0, 0.5]])  # fmt: skip


class TiedMLP(nn.Module):
    """fc1 -> relu -> fc2 -> relu -> head, with fc2's weight tied to fc1's."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        self.fc2.weight = self.fc1.weight
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc1.weight.copy_(W)
            self.fc1.bias.zero_()
            # fc2's bias makes its rows 0 and 1 look important on their own, rows 2 and 3 for fc1
            self.fc2.bias.copy_(torch.tensor([10.0, 10.0, 0.0, 0.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_tied_layers_share_one_channel_group() -> None:
    groups = build_groups(TiedMLP(), Channel())
    assert [g.name for g in groups] == ["fc1", "head"]
    assert groups[0].tensor_names() == ["fc1.weight", "fc1.bias", "fc2.bias"]


def test_tied_layers_share_one_element_group() -> None:
    groups = build_groups(TiedMLP(), Element())
    assert [(g.name, g.tensor_names()) for g in groups] == [
        ("fc1", ["fc1.weight"]),
        ("head", ["head.weight"]),
    ]


@pytest.mark.parametrize("granularity", ["channel", "unstructured"])
def test_pruned_tied_mlp_bakes_to_the_same_outputs(granularity: str) -> None:
    x = torch.randn(8, 4)
    result = prunekit.prune(TiedMLP(), granularity=granularity, sparsity=0.5, scope="layer")
    model = result.model
    assert torch.equal(model.fc1.weight, model.fc2.weight)
    masked = model(x)
    bake_masks(model)
    assert model.fc1.weight is model.fc2.weight
    torch.testing.assert_close(model(x), masked)


def test_mask_on_one_name_masks_every_use_of_the_tensor() -> None:
    model = TiedMLP()
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]] * 4)
    apply_masks(model, {"fc1.weight": mask})
    assert torch.equal(model.fc2.weight, W * mask)
    x = torch.randn(8, 4)
    masked = model(x)
    bake_masks(model)
    assert model.fc1.weight is model.fc2.weight
    assert torch.equal(model.fc1.weight.detach(), W * mask)
    torch.testing.assert_close(model(x), masked)


def test_different_masks_for_one_tensor_are_refused() -> None:
    model = TiedMLP()
    a = torch.tensor([[0.0, 1.0, 1.0, 1.0]] * 4)
    with pytest.raises(ConfigError, match="'fc1.weight' and 'fc2.weight'"):
        apply_masks(model, {"fc1.weight": a, "fc2.weight": 1 - a})
    assert model.fc2.weight is model.fc1.weight
    assert not hasattr(model.fc1, "parametrizations")
