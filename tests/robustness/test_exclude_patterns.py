"""A misspelt ``exclude`` pattern is refused the same way for masks and for surgery: a
ConfigError naming the pattern, with a did-you-mean over the model's layer names."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import prunekit
from prunekit.errors import ConfigError
from prunekit.granularity import Channel, Element, build_groups


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Linear(4, 6)
        self.classifier = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.relu(self.features(x)))


MESSAGE = (
    r"exclude pattern 'clasifier' matches no module of the model \(did you mean 'classifier'\?\)"
)


def test_build_groups_refuses_a_pattern_that_matches_nothing() -> None:
    with pytest.raises(ConfigError, match=MESSAGE):
        build_groups(Net(), Element(), exclude=["clasifier"])


@pytest.mark.parametrize("surgery", [False, True])
def test_prune_refuses_it_in_both_paths(surgery: bool) -> None:
    x = torch.randn(2, 4)
    with pytest.raises(ConfigError, match=MESSAGE):
        prunekit.prune(Net(), x, granularity="channel", sparsity=0.5, exclude=["clasifier"],
                       surgery=surgery)  # fmt: skip


def test_matching_patterns_and_the_default_include_are_fine() -> None:
    groups = build_groups(Net(), Channel(), exclude=["class*"])
    assert [g.name for g in groups] == ["features"]
    assert [g.name for g in build_groups(Net(), Channel())] == ["features", "classifier"]


def test_a_pattern_naming_a_non_prunable_module_is_fine() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert [g.name for g in build_groups(model, Element(), exclude=["1"])] == ["0", "2"]
