"""Tracing the hand-built nets: which tensors each group holds, worked out by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from prunekit.core.groups import Group
from prunekit.core.views import AxisView, IndexView
from prunekit.graph import build_structural_groups


def members(group: Group) -> dict[tuple[str, int], object]:
    return {(m.tensor, m.view.dim): m.view for m in group.members}  # type: ignore[attr-defined]


def by_name(groups: list[Group]) -> dict[str, Group]:
    return {g.name: g for g in groups}


@pytest.fixture
def build(nets: dict[str, tuple[type[nn.Module], tuple[int, ...]]]) -> Callable[[str], list[Group]]:
    def run(name: str) -> list[Group]:
        cls, shape = nets[name]
        torch.manual_seed(0)
        return build_structural_groups(cls(), torch.randn(shape))

    return run


def test_conv_bn_chain_groups(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("conv_bn_chain"))
    assert sorted(groups) == ["conv1", "conv2"]
    conv1 = groups["conv1"]
    assert conv1.n_units == 8
    assert set(members(conv1)) == {
        ("conv1.weight", 0),
        ("conv1.bias", 0),
        ("bn1.weight", 0),
        ("bn1.bias", 0),
        ("bn1.running_mean", 0),
        ("bn1.running_var", 0),
        ("conv2.weight", 1),
    }
    assert conv1.root.tensor == "conv1.weight"
    assert conv1.output == ("conv1", 1)
    scored = {m.tensor for m in conv1.members if m.scored}
    assert "bn1.running_mean" not in scored and "bn1.weight" in scored
    # the classifier's outputs are the model's outputs: never a group, only its columns move
    assert ("fc.weight", 1) in members(groups["conv2"])


def test_linear_chain_groups(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("linear_chain"))
    assert sorted(groups) == ["fc1", "fc2"]
    assert set(members(groups["fc2"])) == {("fc2.weight", 0), ("fc2.bias", 0), ("fc3.weight", 1)}
    assert groups["fc2"].output == ("fc2", -1)


def test_flatten_into_linear_repeats_each_channel(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("flatten_linear"))
    view = members(groups["conv"])[("fc1.weight", 1)]
    assert view == AxisView((6, 80), dim=1, units=5, offset=0, repeat=16)


def test_residual_couples_every_writer_of_the_stream(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("residual"))
    assert sorted(groups) == ["a1", "b1", "stem"]
    stream = members(groups["stem"])
    for key in [
        ("stem.weight", 0),
        ("a2.weight", 0),
        ("bn.weight", 0),
        ("b2.weight", 0),
        ("a1.weight", 1),
        ("b1.weight", 1),
        ("head.weight", 1),
    ]:
        assert key in stream
    assert groups["stem"].n_units == 8


def test_concat_places_each_producer_at_its_offset(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("dense_concat"))
    assert members(groups["stem"])[("head.weight", 1)] == AxisView((2, 10, 1, 1), 1, 4, 0)
    assert members(groups["l1"])[("head.weight", 1)] == AxisView((2, 10, 1, 1), 1, 3, 4)
    assert members(groups["l2"])[("head.weight", 1)] == AxisView((2, 10, 1, 1), 1, 3, 7)
    assert members(groups["l1"])[("bn.weight", 0)] == AxisView((7,), 0, 3, 4)
    assert members(groups["l1"])[("l2.weight", 1)] == AxisView((3, 7, 3, 3), 1, 3, 4)


def test_chunk_pairs_the_halves(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("split_chunk"))
    conv = members(groups["conv"])
    assert conv[("conv.weight", 0)] == IndexView((8, 3, 1, 1), 0, ((0, 4), (1, 5), (2, 6), (3, 7)))
    assert conv[("left.weight", 1)] == AxisView((4, 4, 3, 3), 1, 4)
    assert members(groups["right"])[("out.weight", 1)] == AxisView((3, 10, 1, 1), 1, 6, 4)


def test_grouped_convs_remove_whole_groups(build: Callable[[str], list[Group]]) -> None:
    (group,) = build("depthwise")
    views = members(group)
    assert group.n_units == 4  # gc has 4 groups of 4 input channels
    assert views[("pw.weight", 0)] == AxisView((8, 3, 1, 1), 0, 4, 0, 2)
    assert views[("dw2.weight", 0)] == AxisView((16, 1, 3, 3), 0, 4, 0, 4)
    assert views[("gc.weight", 0)] == AxisView((8, 4, 3, 3), 0, 4, 0, 2)
    assert ("gc.weight", 1) not in views  # per-group input slots are not units


def test_squeeze_excite_couples_scale_and_features(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("squeeze_excite"))
    views = members(groups["conv"])
    for key in [("se1.weight", 1), ("se2.weight", 0), ("se2.bias", 0), ("out.weight", 1)]:
        assert key in views


@pytest.mark.parametrize("name", ["shuffle_reshape", "shuffle_native"])
def test_channel_shuffle_maps_indices_exactly(
    name: str, build: Callable[[str], list[Group]]
) -> None:
    (group,) = build(name)
    views = members(group)
    # chunk pairs stem channel j with j + 4; after the shuffle they sit at 2j and 2j + 1
    assert views[("stem.weight", 0)] == IndexView((8, 3, 1, 1), 0, ((0, 4), (1, 5), (2, 6), (3, 7)))
    assert views[("out.weight", 1)] == AxisView((3, 8, 1, 1), 1, 4, 0, 2)


def test_pixel_shuffle_removes_whole_output_channels(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("pixel_shuffle"))
    assert members(groups["conv"])[("conv.weight", 0)] == AxisView((12, 3, 3, 3), 0, 3, 0, 4)
    assert members(groups["conv"])[("mid.weight", 1)] == AxisView((5, 3, 1, 1), 1, 3)


def test_conv_transpose_out_channels_are_weight_dim_1(build: Callable[[str], list[Group]]) -> None:
    groups = by_name(build("transposed"))
    assert ("up.weight", 0) in members(groups["down"])
    assert groups["up"].root.tensor == "up.weight" and groups["up"].root.view.dim == 1  # type: ignore[attr-defined]
    assert ("bn.weight", 0) in members(groups["up"])


def test_group_norm_units_are_norm_groups_and_layer_norm_is_inexact(
    build: Callable[[str], list[Group]],
) -> None:
    groups = build("norms")
    named = by_name(groups)
    assert named["conv"].n_units == 4
    assert members(named["conv"])[("gn.weight", 0)] == AxisView((8,), 0, 4, 0, 2)
    assert ("ln.weight", 0) in members(named["fc"])
    assert groups.inexact == frozenset({"fc"})  # type: ignore[attr-defined]


def test_module_called_twice_is_one_group(build: Callable[[str], list[Group]]) -> None:
    (group,) = build("shared_module")
    views = members(group)
    for key in [("shared.weight", 0), ("shared.weight", 1), ("bn_a.weight", 0), ("bn_b.weight", 0)]:
        assert key in views


def test_prelu_and_instance_norm_follow_channels(build: Callable[[str], list[Group]]) -> None:
    (group,) = build("prelu_instance_norm")
    assert {("act.weight", 0), ("norm.weight", 0), ("out.weight", 1)} <= set(members(group))


def test_tied_embedding_and_head_share_the_hidden_units() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.fc = nn.Linear(6, 6)
            self.head = nn.Linear(6, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.fc(self.emb(ids))))

    groups = build_structural_groups(Tied(), torch.tensor([[1, 2, 3]]))
    assert [g.name for g in groups] == ["emb"]
    assert set(members(groups[0])) == {
        ("emb.weight", 1),
        ("fc.weight", 0),
        ("fc.weight", 1),
        ("fc.bias", 0),
    }


def test_group_scores_reduce_over_every_member(nets: dict) -> None:
    model = nets["conv_bn_chain"][0]()
    (conv1, _) = build_structural_groups(model, torch.randn(1, 3, 4, 4))
    values = {n: p.detach().abs() for n, p in model.named_parameters()}
    scores = conv1.reduce(values, "sum")
    w = model.conv1.weight.abs().sum((1, 2, 3)) + model.conv1.bias.abs()
    w = w + model.bn1.weight.abs() + model.bn1.bias.abs() + model.conv2.weight.abs().sum((0, 2, 3))
    torch.testing.assert_close(scores, w)


def test_groups_serialise(build: Callable[[str], list[Group]]) -> None:
    for group in build("shuffle_reshape") + build("dense_concat"):
        assert Group.from_dict(group.to_dict()) == group


def test_group_output_is_set_for_activation_estimators(
    build: Callable[[str], list[Group]],
) -> None:
    assert by_name(build("flatten_linear"))["conv"].output == ("conv", 1)
    assert by_name(build("residual"))["stem"].output == ("stem", 1)
    assert by_name(build("dense_concat"))["l1"].output == ("l1", 1)
    assert by_name(build("split_chunk"))["conv"].output is None  # units are channel pairs
