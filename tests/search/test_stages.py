"""The per-stage search space: stage names by hand, one searched keep ratio per stage, and
every layer of a stage pruned to the same ratio in every trial."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.config import make_config
from prunekit.errors import ConfigError
from prunekit.search import search
from prunekit.search.prepare import build_space, feature_sizes, prepare
from prunekit.search.space import SearchSpace
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
    config = make_config(None, {"granularity": "channel", "sparsity": 0.0})
    prepared = prepare(two_stage_cnn(), torch.randn(1, 1, 8, 8), config, None)
    space = build_space(prepared, {"macs": 0.5}, 0.02, space="stage")
    assert space.param_names == ["s1", "s2"]
    assert space.expand({"s1": 0.5, "s2": 0.25}) == {
        "s1.0": 0.5, "s1.3": 0.5, "s2.0": 0.25, "s2.3": 0.25,
    }  # fmt: skip
    per_layer = build_space(prepared, {"macs": 0.5}, 0.02)
    assert per_layer.param_names == ["s1.0", "s1.3", "s2.0", "s2.3"]


def test_resolution_stages_by_hand() -> None:
    sizes = {"stem": (56, 56), "a.0.conv": (28, 28), "a.1.conv": (28, 28), "seq": (100,)}
    layers = ["stem", "a.0.conv", "a.1.conv", "seq", "head.fc"]
    assert assign_stages(layers, "resolution", sizes=sizes) == {
        "stem": "res56x56", "a.0.conv": "res28x28", "a.1.conv": "res28x28", "seq": "res100",
        "head.fc": "head",  # no feature map: the name rule
    }  # fmt: skip
    with pytest.raises(ConfigError, match="needs the layers' feature-map sizes"):
        assign_stages(layers, "resolution")


def strided_net() -> nn.Module:
    """On a 1 x 8 x 6 input: stem keeps 8 x 6; down (3x3, stride 2, padding 1) gives
    ((8 + 2 - 3) // 2 + 1, (6 + 2 - 3) // 2 + 1) = 4 x 3; body keeps 4 x 3; fc is a Linear
    layer; head (the classifier) is never narrowed."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(1, 4, 3, padding=1), act1=nn.ReLU(),
        down=nn.Conv2d(4, 6, 3, stride=2, padding=1), act2=nn.ReLU(),
        body=nn.Conv2d(6, 6, 3, padding=1), act3=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(6, 8), act4=nn.ReLU(), head=nn.Linear(8, 3),
    )).eval()  # fmt: skip


def stage_space(model: nn.Module, x: torch.Tensor, **kw: object) -> SearchSpace:
    config = make_config(None, {"granularity": "channel", "sparsity": 0.0})
    return build_space(prepare(model, x, config, None), {"macs": 0.5}, 0.02, **kw)  # type: ignore[arg-type]


def test_resolution_stages_of_a_strided_net() -> None:
    prepared = prepare(
        strided_net(), torch.randn(1, 1, 8, 6),
        make_config(None, {"granularity": "channel", "sparsity": 0.0}), None,
    )  # fmt: skip
    assert feature_sizes(prepared) == {"stem": (8, 6), "down": (4, 3), "body": (4, 3)}
    space = build_space(prepared, {"macs": 0.5}, 0.02, space="stage", stages="resolution")
    assert [(p.name, p.patterns) for p in space.params] == [
        ("res8x6", ("stem",)), ("res4x3", ("down", "body")), ("fc", ("fc",)),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "layers", "stages"),
    [
        # 64 x 64 inputs: 32, 16, 8, 4 and 2 pixels a side after the stem and each stride
        ("mobilenet_v2", 25, ["res32x32", "res16x16", "res8x8", "res4x4", "res2x2"]),
        ("resnet18", 12, ["res32x32", "res16x16", "res8x8", "res4x4", "res2x2"]),
    ],
)
def test_torchvision_nets_get_one_stage_per_resolution(
    name: str, layers: int, stages: list[str]
) -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    assert len(stage_space(model, x).param_names) == layers
    space = stage_space(model, x, space="stage", stages="resolution")
    assert space.param_names == stages
    by_stage = {p.name: p.patterns for p in space.params}
    if name == "resnet18":  # the stem conv runs before the max-pool; layer1's convs after it
        assert by_stage["res32x32"] == ("conv1",)
        assert by_stage["res8x8"] == ("layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1")
    else:  # a block's expanding 1x1 conv runs before its strided depthwise conv
        assert by_stage["res16x16"] == (
            "features.2.conv.2", "features.3.conv.0.0", "features.4.conv.0.0",
        )  # fmt: skip


def test_a_resolution_stage_search_prunes_a_stage_alike() -> None:
    result = search(
        strided_net(), torch.randn(1, 1, 8, 6), data=batches((1, 8, 6), 3, 4),
        target={"macs": 0.5}, searcher="random", trials=4, space="stage", stages="resolution",
        storage=":memory:", n_batches=2, progress=False,
    )  # fmt: skip
    assert result.config.stages == "resolution" and len(result.completed) == 4
    for t in result.completed:
        assert set(t.sparsities) == {"stem", "down", "body", "fc"}
        assert t.sparsities["down"] == t.sparsities["body"]  # both 6 channels wide
        assert t.macs <= 0.5 + 1e-9


def test_each_stage_rule_names_its_own_study(tmp_path: Path) -> None:
    """Stage rules on one storage are separate studies (one would refuse the other's meta)."""
    journal = str(tmp_path / "s.journal")
    names = []
    for stages in (1, {"s1.*": "a", "s2.*": "b"}, {"s*": "all"}):
        result = search(
            two_stage_cnn(), torch.randn(1, 1, 8, 8), data=batches((1, 8, 8), 4, 4),
            target={"macs": 0.5}, searcher="random", trials=1, stages=stages, storage=journal,
            n_batches=2, progress=False,
        )  # fmt: skip
        names.append(result.config.study_name)
    assert names[0] == "random-macs0.5-proxy-stage-depth1"
    assert len(set(names)) == 3 and all(
        n.startswith("random-macs0.5-proxy-stage-map") for n in names[1:]
    )
