import re

import pytest
import torch
from torch import nn

import prunekit
from prunekit.budget import Target, build_cost_model, parse_target, select_to_target
from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.core import AxisView, Group, Member, SelectionConfig, select
from prunekit.core.selection import group_floor
from prunekit.errors import ConfigError
from prunekit.estimators import get_estimator
from prunekit.graph import build_structural_groups
from prunekit.measure import count_macs, count_params, dense_size_bytes
from prunekit.models import build_model
from prunekit.surgery.apply import apply_surgery


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"macs": 0.5}, Target("macs", 0.5)),
        ("params=0.3", Target("params", 0.3)),
        (" MACs = 0.25 ", Target("macs", 0.25)),
        ("params:1", Target("params", 1.0)),
        (Target("macs", 0.7), Target("macs", 0.7)),
    ],
)
def test_parse_target_reads_mappings_strings_and_targets(value: object, expected: Target) -> None:
    assert parse_target(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mac=0.5", r"unknown target metric 'mac' \(did you mean 'macs'\?\)"),
        ({"param": 0.5}, "did you mean 'params'?"),
        ("macs=0", r"outside \(0, 1\]"),
        ({"params": 1.5}, r"outside \(0, 1\]"),
        ({"macs": 0.5, "params": 0.5}, "exactly one metric"),
        ("macs=0.5,params=0.5", "names 2 metrics"),
        ("macs=half", "'half' is not a number"),
        ("macs", "not of the form metric=fraction"),
        (0.5, "a target is a Target"),
    ],
)
def test_bad_targets_are_refused_clearly(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_target(value)  # type: ignore[arg-type]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_cost_model_scales_each_layer_by_its_kept_in_and_out_fraction() -> None:
    model, x = _mlp(), torch.randn(1, 4)
    groups = build_structural_groups(model, x)
    assert [g.n_units for g in groups] == [6]  # the hidden units; the outputs are fixed
    keep = {groups[0].name: torch.tensor([True, False, True, False, True, False])}
    macs = build_cost_model(model, x, groups, "macs")
    assert macs.dense == 4 * 6 + 6 * 3
    assert macs.cost(keep) == 4 * 3 + 3 * 3  # both products lose half of the hidden width
    params = build_cost_model(model, x, groups, "params")
    assert params.dense == (4 * 6 + 6) + (6 * 3 + 3)
    assert params.cost(keep) == (4 * 3 + 3) + (3 * 3 + 3)  # the output bias stays whole


def _case(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "resnet18":
        ensure_torchvision_ops()
        import torchvision

        return torchvision.models.resnet18(weights=None).eval(), torch.randn(1, 3, 64, 64)
    model = build_model(name).eval()
    return model, model.example_input(1)


def _measured(model: nn.Module, x: torch.Tensor, metric: str) -> int:
    return count_macs(model, x).total if metric == "macs" else count_params(model)


@pytest.mark.parametrize("name", ["small-resnet", "small-vgg", "resnet18"])
@pytest.mark.parametrize(
    ("target", "config"),
    [
        (Target("macs", 0.5), SelectionConfig()),
        (Target("params", 0.3), SelectionConfig()),
        (Target("macs", 0.6), SelectionConfig(scope="layer")),
    ],
    ids=["macs=0.5", "params=0.3", "macs=0.6-layer"],
)
def test_pruned_model_meets_the_target_and_every_floor(
    name: str, target: Target, config: SelectionConfig
) -> None:
    model, x = _case(name)
    groups = build_structural_groups(model, x)
    scores = get_estimator("magnitude").score(model, groups, None)
    selection = select_to_target(model, x, groups, scores, config, target)
    pruned, _ = apply_surgery(model, groups, selection)
    achieved = _measured(pruned, x, target.metric) / _measured(model, x, target.metric)
    assert abs(achieved / target.keep - 1) <= 0.02
    for group in groups:
        assert int(selection[group.name].sum()) >= group_floor(group, config) >= 1
    assert pruned(x).shape == model(x).shape


def test_an_unreachable_target_names_the_lowest_reachable_ratio() -> None:
    model, x = _case("small-vgg")
    groups = build_structural_groups(model, x)
    scores = get_estimator("magnitude").score(model, groups, None)
    config = SelectionConfig(min_keep_fraction=0.8)
    with pytest.raises(ConfigError, match="cannot be reached") as info:
        select_to_target(model, x, groups, scores, config, Target("macs", 0.3))
    lowest = float(re.findall(r"lowest reachable macs ratio is ([0-9.]+)", str(info.value))[0])
    # every group cut to its floor, counted after real surgery
    floor_only = select(
        scores, groups, SelectionConfig(sparsity=0.99, scope="layer", min_keep_fraction=0.8)
    )
    pruned, _ = apply_surgery(model, groups, floor_only)
    assert lowest == pytest.approx(
        count_macs(pruned, x).total / count_macs(model, x).total, abs=1e-4
    )


def test_no_groups_and_full_keep() -> None:
    model, x = _mlp(), torch.randn(1, 4)
    with pytest.raises(ConfigError, match="no prunable group"):
        select_to_target(model, x, [], {}, SelectionConfig(), Target("macs", 0.5))
    groups = build_structural_groups(model, x)
    scores = {groups[0].name: torch.arange(6.0)}
    kept = select_to_target(model, x, groups, scores, SelectionConfig(), Target("params", 1.0))
    assert bool(kept[groups[0].name].all())


def test_a_unit_too_big_to_remove_is_kept_and_smaller_ones_go_instead() -> None:
    # hidden layer 1: two units of 4 channels each (as a grouped convolution couples them),
    # scored lowest; hidden layer 2: eight single channels
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    big = Group("big", "0", (
        Member("0.weight", AxisView((8, 10), 0, 2, 0, 4)),
        Member("0.bias", AxisView((8,), 0, 2, 0, 4)),
        Member("2.weight", AxisView((8, 8), 1, 2, 0, 4)),
    ))  # fmt: skip
    small = Group("small", "2", (
        Member("2.weight", AxisView((8, 8), 0)),
        Member("2.bias", AxisView((8,), 0)),
        Member("4.weight", AxisView((1, 8), 1)),
    ))  # fmt: skip
    scores = {"big": torch.tensor([0.1, 0.2]), "small": torch.arange(1.0, 9.0)}
    # dense 88 + 72 + 9 = 169 params; a big unit costs 44 + 32, a small one 9 + 1
    target = Target("params", (169 - 3 * 10) / 169)
    x = torch.randn(1, 10)
    sel = select_to_target(model, x, [big, small], scores, SelectionConfig(), target)
    assert sel["big"].tolist() == [True, True]
    assert sel["small"].tolist() == [False] * 3 + [True] * 5


def test_coarse_units_fall_back_to_a_finer_ranking_within_two_percent() -> None:
    """RegNet's grouped convolutions make 48-channel units: one sparsity per layer lands 3% off
    the target, a global ranking of mean-normalised scores meets it."""
    ensure_torchvision_ops()
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.regnet_y_1_6gf(weights=None).eval()
    with pytest.warns(UserWarning, match="one sparsity per layer lands"):
        result = prunekit.prune(
            model, torch.randn(1, 3, 224, 224), granularity="channel", target={"macs": 0.5},
            recalibrate=False,
        )  # fmt: skip
    assert result.macs_ratio is not None and abs(result.macs_ratio / 0.5 - 1) <= 0.02


def test_size_target_keeps_the_asked_fraction_of_the_saved_bytes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.Flatten(),
        nn.LazyLinear(10),
    )  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    model(x)
    result = prunekit.prune(model, x, granularity="channel", target={"size": 0.5})
    ratio = dense_size_bytes(result.model) / dense_size_bytes(model)
    assert ratio == pytest.approx(0.5, abs=0.03)
