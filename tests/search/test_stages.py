"""The per-stage search space: stage names by hand, one searched keep ratio per stage, and
every layer of a stage pruned to the same ratio in every trial."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.search import search
from prunekit.search.stages import assign_stages, stage_of

from .conftest import batches


def test_stage_of_drops_the_layer_and_trailing_block_indices() -> None:
    assert stage_of("layer2.1.conv1") == "layer2"
    assert stage_of("features.stage3.conv1") == "features.stage3"
    assert stage_of("encoder.layer.3.attention.self.query") == "encoder.layer.3.attention.self"
    assert stage_of("fc") == "fc"  # a top-level layer is a stage of its own
    assert stage_of("layer2.1.conv1", depth=1) == "layer2"
    assert stage_of("layer2.1.conv1", depth=2) == "layer2.1"


def test_a_mapping_wins_over_the_name_rule() -> None:
    layers = ["conv1", "layer1.0.conv1", "layer2.0.conv1", "fc"]
    assert assign_stages(layers, stages={"layer*": "body", "conv1": "stem"}) == {
        "conv1": "stem", "layer1.0.conv1": "body", "layer2.0.conv1": "body", "fc": "fc",
    }  # fmt: skip
    assert assign_stages(["layer2.1.conv1"], 2) == {"layer2.1.conv1": "layer2.1"}
    with pytest.raises(ConfigError, match="stages must be a name depth >= 1"):
        assign_stages(layers, 0)


def two_stage_cnn() -> nn.Module:
    """Two stages of two 8-channel convolutions: prunable layers s1.0, s1.3, s2.0, s2.3."""
    torch.manual_seed(0)

    def stage(c_in: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        )  # fmt: skip

    model = nn.Sequential()
    model.add_module("s1", stage(1))
    model.add_module("s2", stage(8))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("head", nn.Linear(8, 4))
    return model.eval()


@pytest.mark.parametrize("searcher", ["random", "tpe"])
def test_stage_space_prunes_every_layer_of_a_stage_alike(searcher: str) -> None:
    result = search(
        two_stage_cnn(), torch.randn(1, 1, 8, 8), data=batches((1, 8, 8), 4, 4),
        target={"macs": 0.5}, searcher=searcher, trials=5, space="stage", storage=":memory:",
        n_batches=2, progress=False,
    )  # fmt: skip
    assert len(result.completed) == 5
    for t in result.completed:
        s = t.sparsities
        assert set(s) == {"s1.0", "s1.3", "s2.0", "s2.3"}
        assert s["s1.0"] == s["s1.3"] and s["s2.0"] == s["s2.3"]
        assert t.macs <= 0.5 + 1e-9
    assert any(t.sparsities["s1.0"] != t.sparsities["s2.0"] for t in result.completed)


def test_stage_space_searches_one_ratio_per_stage() -> None:
    from prunekit.config import make_config
    from prunekit.search.prepare import build_space, prepare

    config = make_config(None, {"granularity": "channel", "sparsity": 0.0})
    prepared = prepare(two_stage_cnn(), torch.randn(1, 1, 8, 8), config, None)
    space = build_space(prepared, {"macs": 0.5}, 0.02, space="stage")
    assert space.param_names == ["s1", "s2"]
    assert space.expand({"s1": 0.5, "s2": 0.25}) == {
        "s1.0": 0.5, "s1.3": 0.5, "s2.0": 0.25, "s2.3": 0.25,
    }  # fmt: skip
    per_layer = build_space(prepared, {"macs": 0.5}, 0.02)
    assert per_layer.param_names == ["s1.0", "s1.3", "s2.0", "s2.3"]
