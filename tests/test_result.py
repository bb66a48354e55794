"""PruneResult: one result type for masks, channel surgery and whole-block removal, with a short
repr, a readable summary and measurements that never throw a pruned model away."""

from __future__ import annotations

import importlib
import math
import warnings
from types import ModuleType

import pytest
import torch
from torch import nn

import prunekit
import prunekit.api
from prunekit.models import build_model


def measuring_module() -> ModuleType:
    """The module whose ``measure`` the one-call API's ``measure_both`` calls."""
    return importlib.import_module(prunekit.api.measure_both.__module__)


def ranked_mlp() -> nn.Sequential:
    """8 -> 16 -> 4 with weights whose magnitudes rank by hand: the first layer holds 1..128
    (hidden unit k's row is 8k+1..8k+8), the second 129..192."""
    first, second = nn.Linear(8, 16), nn.Linear(16, 4)
    with torch.no_grad():
        first.weight.copy_(torch.arange(1.0, 129.0).reshape(16, 8) / 128)
        second.weight.copy_(torch.arange(129.0, 193.0).reshape(4, 16) / 128)
        first.bias.fill_(0.1)
        second.bias.fill_(0.1)
    return nn.Sequential(first, nn.ReLU(), second)


def linear(model: nn.Module, name: str) -> nn.Linear:
    layer = model.get_submodule(name)
    assert isinstance(layer, nn.Linear)
    return layer


def quiet_prune(model: nn.Module, *args: object, **options: object) -> prunekit.PruneResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BatchNorm statistics without data: not under test
        return prunekit.prune(model, *args, **options)  # type: ignore[arg-type]


def assert_short_repr(result: prunekit.PruneResult) -> None:
    text = repr(result)
    assert text.startswith("PruneResult(") and text.endswith(")")
    assert len(text) < 200 and "\n" not in text
    assert "Conv2d" not in text and "Linear" not in text  # not the module tree


def test_masks_return_a_prune_result() -> None:
    result = quiet_prune(ranked_mlp(), torch.randn(1, 8), sparsity=0.5)
    assert isinstance(result, prunekit.PruneResult)
    assert not result.structural and result.plan is None and result.masks is not None
    # global magnitude: the 96 smallest of 1..192 are all in the first layer
    assert (result.removed_units, result.total_units) == (96, 192)
    assert dict((n, kept) for n, _, kept in result.layer_rows()) == {"0": 32, "2": 64}
    assert result.params_ratio == 1.0 and result.macs_ratio == 1.0  # masks keep dense shapes
    assert_short_repr(result)
    assert "verification=n/a (masks)" in repr(result)
    summary = result.summary()
    assert "(masks), 96 of 192 units removed" in summary
    assert "verification: not needed" in summary


def test_channel_surgery_returns_a_prune_result_with_hand_counted_shapes() -> None:
    mlp = ranked_mlp()
    x = torch.randn(5, 8)
    result = quiet_prune(mlp, x[:1], sparsity=0.5, granularity="channel")
    assert isinstance(result, prunekit.PruneResult) and result.structural
    pruned = result.model
    # the 8 hidden units with the largest rows (8..15) stay: 8*8+8 + 8*4+4 = 108 parameters
    assert linear(pruned, "0").weight.shape == (8, 8)
    assert linear(pruned, "2").weight.shape == (4, 8)
    assert torch.equal(linear(pruned, "0").weight, linear(mlp, "0").weight[8:])
    assert result.before is not None and result.after is not None
    assert (result.before.params, result.after.params) == (212, 108)
    assert (result.before.macs, result.after.macs) == (192, 96)
    assert result.macs_ratio == 0.5
    assert_short_repr(result)
    assert "verification=passed" in repr(result)


def test_layer_granularity_returns_a_prune_result() -> None:
    model = build_model("small-resnet", blocks=(2, 2, 2))
    result = quiet_prune(model, model.example_input(), granularity="layer", sparsity=0.5)
    assert isinstance(result, prunekit.PruneResult) and result.structural
    assert result.granularity == "layer"
    # six blocks, the first of stages 2 and 3 change width (not removable): 2 of 4 go
    assert (result.removed_units, result.total_units) == (2, 4)
    assert result.macs_ratio is not None and result.macs_ratio < 1.0
    assert_short_repr(result)
    assert "verification: passed" in result.summary()


def test_summary_shows_metrics_the_most_cut_groups_and_the_verification() -> None:
    model = build_model("small-resnet")
    result = quiet_prune(model, model.example_input(), granularity="channel", sparsity=0.5)
    summary = result.summary()
    lines = summary.splitlines()
    assert lines[0].startswith("prunekit: channel pruning by magnitude (surgery)")
    assert any(line.split()[:1] == ["params"] for line in lines)
    assert any(line.split()[:1] == ["MACs"] for line in lines)
    assert "verification: passed" in summary
    assert "most cut first" in summary
    shown = [line for line in lines if line.startswith("    ") and "/" in line]
    fractions = [int(line.split()[1]) / int(line.split()[3]) for line in shown]
    assert fractions == sorted(fractions) and len(fractions) >= 1
    most_cut = min(result.layer_rows(), key=lambda row: row[2] / row[1])
    assert shown[0].split()[0] == most_cut[0]
    short = result.summary(max_layers=2)
    assert f"... {len(shown) - 2} more" in short


def test_macs_target_lands_within_two_percent() -> None:
    model = build_model("small-resnet")
    result = quiet_prune(model, model.example_input(), granularity="channel", target={"macs": 0.5})
    assert result.macs_ratio is not None
    assert abs(result.macs_ratio - 0.5) <= 0.02


def test_no_group_falls_below_a_tenth_of_its_units_at_sparsity_point_nine() -> None:
    model = build_model("small-resnet")
    result = quiet_prune(model, model.example_input(), granularity="channel", sparsity=0.9)
    floor = prunekit.PruneConfig.default("min_keep_fraction")
    assert floor == 0.1
    for name, total, kept in result.layer_rows():
        assert kept >= math.ceil(floor * total), f"{name}: {kept} of {total}"
    assert min(kept / total for _, total, kept in result.layer_rows()) < 0.2  # it did cut hard


@pytest.mark.parametrize("granularity", ["channel", "element"])
def test_a_failed_measurement_becomes_a_note(
    monkeypatch: pytest.MonkeyPatch, granularity: str
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the profiler cannot run this model")

    monkeypatch.setattr(measuring_module(), "measure", broken)
    with pytest.warns(RuntimeWarning, match="measuring the models failed"):
        result = prunekit.prune(
            ranked_mlp(), torch.randn(1, 8), sparsity=0.5, granularity=granularity
        )
    assert result.before is None and result.after is None and result.metrics == []
    assert result.macs_ratio is None and result.params_ratio is None
    assert len(result.notes) == 1 and "the profiler cannot run this model" in result.notes[0]
    assert f"note: {result.notes[0]}" in result.summary()
    assert_short_repr(result)
    assert result.model(torch.randn(2, 8)).shape == (2, 4)
