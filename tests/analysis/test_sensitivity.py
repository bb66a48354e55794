"""Sensitivity analysis: hand-worked curves, irrelevant layers, and the user's model untouched."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor, nn

from prunekit import apply_masks, build_groups, get_estimator, get_granularity, masks_of
from prunekit.analysis import SensitivityResult, sensitivity
from prunekit.errors import ConfigError, DataError, ScoreError
from prunekit.graph import build_structural_groups

from .conftest import RESIDUAL_BATCH, residual_net


def _dot_model(weights: list[float]) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(len(weights), 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([weights]))
    return model


def _output(model: nn.Module) -> float:
    """The metric of the hand-worked cases: the model's output on an all-ones input."""
    with torch.no_grad():
        return float(model(torch.ones(1, 4)))


def test_hand_worked_curve_removes_lowest_scores_first() -> None:
    model = _dot_model([1.0, 2.0, 3.0, 4.0])
    groups = build_groups(model, get_granularity("element"))
    scores = get_estimator("magnitude").score(model, groups)
    result = sensitivity(
        model, groups, scores, _output, (0.75, 0.25, 0.5), higher_is_better=True, progress=False
    )
    # 10 dense; without 1 -> 9; without 1, 2 -> 7; without 1, 2, 3 -> 4
    assert result.baseline == 10.0
    assert result.curves == {"0": ((0.25, 9.0), (0.5, 7.0), (0.75, 4.0))}
    assert result.sparsities == (0.25, 0.5, 0.75)
    assert result.drop("0") == ((0.25, 1.0), (0.5, 3.0), (0.75, 6.0))

    reverse = {"0": -scores["0"]}
    worst = sensitivity(
        model, groups, reverse, _output, (0.25,), higher_is_better=True, progress=False
    )
    assert worst.curves["0"] == ((0.25, 6.0),)  # the largest weight goes first


def test_existing_masks_stay_in_effect_and_are_kept() -> None:
    model = _dot_model([1.0, 2.0, 3.0, 4.0])
    apply_masks(model, {"0.weight": torch.tensor([[1.0, 1.0, 1.0, 0.0]])})
    groups = build_groups(model, get_granularity("element"))
    scores = get_estimator("magnitude").score(model, groups)  # [1, 2, 3, 0]
    result = sensitivity(
        model, groups, scores, _output, (0.25, 0.5), higher_is_better=True, progress=False
    )
    assert result.baseline == 6.0
    assert result.curves["0"] == ((0.25, 6.0), (0.5, 5.0))
    assert torch.equal(masks_of(model)["0.weight"], torch.tensor([[1.0, 1.0, 1.0, 0.0]]))


class TwoBranch(nn.Module):
    """``head([relu(a(x)), relu(b(x))])`` with every weight from ``a`` into ``head`` zero: all
    units of ``a`` are irrelevant to the output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 6)
        self.head = nn.Linear(12, 3)
        with torch.no_grad():
            self.head.weight[:, :6] = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=-1))


def _loss_fn(x: Tensor, y: Tensor):
    def loss(model: nn.Module) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(x), y))

    return loss


def test_curve_is_flat_for_a_layer_whose_units_are_all_irrelevant() -> None:
    model = TwoBranch()
    x, y = torch.randn(32, 4, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    groups = build_groups(model, get_granularity("channel"), include=["a", "b"])
    scores = get_estimator("magnitude").score(model, groups)
    result = sensitivity(
        model, groups, scores, _loss_fn(x, y), higher_is_better=False, progress=False
    )
    assert [m for _, m in result.curves["a"]] == [result.baseline] * 5
    assert all(d == 0.0 for _, d in result.drop("a"))
    assert any(m != result.baseline for _, m in result.curves["b"])


def test_the_users_model_is_untouched_during_and_after(model_state) -> None:
    model = TwoBranch()
    apply_masks(model, {"b.weight": (torch.arange(24).reshape(6, 4) % 5 != 0).float()})
    model.train()
    model.head.eval()
    x, y = torch.randn(16, 4), torch.arange(16) % 3
    model(x).sum().backward()  # gradients present, they must survive too
    before = model_state.of(model)
    with torch.no_grad():
        dense_out = model(x).clone()
    groups = build_groups(model, get_granularity("channel"))
    scores = get_estimator("magnitude").score(model, groups)
    seen: list[nn.Module] = []

    def metric(m: nn.Module) -> float:
        seen.append(m)
        with torch.no_grad():
            assert torch.equal(model(x), dense_out)  # the user's model is never the one masked
            return float(F.cross_entropy(m(x), y))

    sensitivity(model, groups, scores, metric, (0.5, 0.9), higher_is_better=False, progress=False)
    assert len(seen) == 1 + 3 * 2 and all(m is not model for m in seen)
    before.assert_same(model)

    def failing(m: nn.Module) -> float:
        raise RuntimeError("evaluation failed")

    with pytest.raises(RuntimeError, match="evaluation failed"):
        sensitivity(model, groups, scores, failing, higher_is_better=False, progress=False)
    before.assert_same(model)


def test_result_serialises_and_renders() -> None:
    result = SensitivityResult(
        0.5, {"fc1": ((0.5, 0.6), (0.9, float("inf")))}, higher_is_better=False
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["curves"]["fc1"] == [[0.5, 0.6], [0.9, None]]
    back = SensitivityResult.from_dict(data)
    assert back.curves["fc1"][0] == (0.5, 0.6) and back.higher_is_better is False
    assert back.drop("fc1")[0] == pytest.approx((0.5, 0.1))  # loss went up by 0.1
    console = Console(record=True, width=100)
    console.print(result.table())
    text = console.export_text()
    assert "fc1" in text and "90%" in text and "dense" in text


def test_bad_inputs_are_refused_with_a_clear_error() -> None:
    model = _dot_model([1.0, 2.0, 3.0, 4.0])
    groups = build_groups(model, get_granularity("element"))
    scores = get_estimator("magnitude").score(model, groups)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        sensitivity(model, groups, scores, _output, (0.5, 1.0), higher_is_better=True)
    with pytest.raises(ScoreError, match="no scores for group '0'"):
        sensitivity(model, groups, {}, _output, higher_is_better=True)
    with pytest.raises(DataError, match="must return a number"):
        sensitivity(model, groups, scores, lambda m: "high", higher_is_better=True)  # type: ignore[arg-type,return-value]
    nm_groups = build_groups(model, get_granularity("2:4"))
    with pytest.raises(ConfigError, match="N:M"):
        sensitivity(model, nm_groups, scores, _output, higher_is_better=True)


def _mean_output(model: nn.Module) -> float:
    """The residual net's metric: its mean output on the four inputs its statistics came from."""
    with torch.no_grad():
        return float(model(RESIDUAL_BATCH[0]).mean())


def test_batchnorm_statistics_are_recalibrated_per_trial_on_a_residual_net() -> None:
    net = residual_net()
    groups = build_structural_groups(net, torch.zeros(1, 1))
    assert [(g.name, g.n_units) for g in groups] == [("a", 2), ("c", 2)]
    scores = {"a": torch.tensor([0.0, 1.0]), "c": torch.tensor([0.0, 1.0])}
    # Dense, bn_d sees 2z + 24 (z: x normalised by bn_a), its running mean 24 and variance 16/3
    # (z has unbiased variance 4/3 in training mode), so the mean output is 0. Cutting unit 0 of
    # the stream leaves d = 10 + (z + 13): mean 23, output mean (23 - 24) / sqrt(16/3).
    # Cutting unit 0 of c leaves d = z + 13: mean 13, output mean (13 - 24) / sqrt(16/3).
    with pytest.warns(UserWarning, match=r"3 BatchNorm layer\(s\).*recalibrate="):
        stale = sensitivity(
            net, groups, scores, _mean_output, (0.5,), higher_is_better=True, progress=False
        )
    assert stale.baseline == pytest.approx(0.0, abs=1e-6)
    assert stale.curves["a"][0][1] == pytest.approx(-(3**0.5) / 4, abs=1e-4)
    assert stale.curves["c"][0][1] == pytest.approx(-11 * 3**0.5 / 4, abs=1e-4)
    # Re-estimated on the same inputs, bn_d's output has mean beta = 0 whatever was cut.
    fresh = sensitivity(
        net, groups, scores, _mean_output, (0.5,), higher_is_better=True, progress=False,
        recalibrate=[RESIDUAL_BATCH],
    )  # fmt: skip
    assert fresh.baseline == pytest.approx(0.0, abs=1e-6)
    assert fresh.curves["a"][0][1] == pytest.approx(0.0, abs=1e-6)
    assert fresh.curves["c"][0][1] == pytest.approx(0.0, abs=1e-6)
    assert net.bn_d.running_mean.item() == pytest.approx(24.0)  # the user's model untouched
    with pytest.raises(DataError, match="recalibrate= holds no batches"):
        sensitivity(net, groups, scores, _mean_output, higher_is_better=True, recalibrate=[])
