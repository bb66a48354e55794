"""Estimator grading against the loss-change oracle: hand-worked correlations, a dead neuron,
and the estimators on an MLP trained on scikit-learn digits."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from prunekit import ScoringData, build_groups, get_estimator, get_granularity
from prunekit.analysis import default_estimators, default_oracle, grade, grade_model
from prunekit.analysis.grading import compare, correlation, label
from prunekit.core.groups import Group, Scores
from prunekit.errors import DataError
from prunekit.estimators import Estimator, Oracle, estimators_for


def test_hand_worked_correlations() -> None:
    rho, tau = correlation(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    # Spearman: 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15); Kendall: (5 concordant - 1 discordant) / 6
    assert rho == pytest.approx(0.8)
    assert tau == pytest.approx(4 / 6)
    assert correlation(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == pytest.approx((-1.0, -1.0))
    assert all(math.isnan(v) for v in correlation(np.ones(3), np.arange(3.0)))


def test_compare_uses_only_units_the_oracle_scored() -> None:
    groups = build_groups(
        nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 3)), get_granularity("channel")
    )
    oracle = {"0": torch.tensor([1.0, 2.0, 3.0, float("nan")]), "1": torch.tensor([5.0, 6.0, 7.0])}
    est = {"0": torch.tensor([10.0, 20.0, 30.0, -99.0]), "1": torch.tensor([3.0, 2.0, 1.0])}
    (rho, _), per_group, n_units = compare(oracle, est, groups)
    assert n_units == 6
    assert per_group["0"] == pytest.approx((1.0, 1.0))
    assert per_group["1"] == pytest.approx((-1.0, -1.0))
    # pooled ranks: oracle 1 2 3 4 5 6, estimator 4 5 6 3 2 1; squared differences sum to 62
    assert rho == pytest.approx(1 - 6 * 62 / (6 * 35))


def test_oracle_of_a_dead_neuron_is_exactly_zero() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[2].weight[:, 1] = 0.0  # neuron 1 of the first layer feeds nothing
    data = ScoringData([(torch.randn(16, 4), torch.arange(16) % 2)], progress=False)
    groups = build_groups(model, get_granularity("channel"), include=["0"])
    scores = Oracle().score(model, groups, data)["0"]
    assert scores[1].item() == 0.0
    assert (scores[[0, 2]] != 0).all()


def test_defaults() -> None:
    assert "oracle" not in default_estimators()
    # bn_scale needs structural groups (a channel with its BatchNorm); grading's are per layer
    expected = set(estimators_for("channel")) - {"oracle", "bn_scale"}
    assert set(default_estimators()) == expected and "angular" not in expected
    model = nn.Sequential(nn.Linear(8, 4))
    assert default_oracle(build_groups(model, get_granularity("channel"))) == Oracle()
    for spec in ("element", "2:4", "block:2x2"):
        groups = build_groups(model, get_granularity(spec))
        assert default_oracle(groups) == Oracle(sample=64)
    assert label(get_estimator("magnitude", p=2.0)) == "magnitude(p=2.0)"
    assert label(get_estimator("magnitude")) == "magnitude"


@pytest.fixture(scope="module")
def channel_grading(digits):
    return grade_model(
        digits.model,
        data=digits.data,
        estimators=[*default_estimators(), "oracle"],
        progress=False,
    )


def test_oracle_graded_against_itself_is_perfect(channel_grading) -> None:
    row = channel_grading.row("oracle")
    assert row.spearman == pytest.approx(1.0)
    assert row.kendall == pytest.approx(1.0)
    assert row.group_spearman == pytest.approx(1.0)
    assert channel_grading.rows[0].spearman == pytest.approx(1.0)  # sorted best first


def test_on_digits_informed_estimators_beat_the_random_control(channel_grading) -> None:
    result = channel_grading
    assert result.n_units == 64 + 64 + 10 and result.n_groups == 3
    assert all(r.status == "ok" and r.n_units == result.n_units for r in result.rows)
    taylor, magnitude, rand = result.row("taylor"), result.row("magnitude"), result.row("random")
    assert taylor.spearman > 0.5 and taylor.kendall > 0.3
    assert magnitude.spearman > 0.3
    assert abs(rand.spearman) < 0.25 and abs(rand.group_spearman) < 0.25
    assert taylor.spearman > rand.spearman + 0.3
    assert taylor.group_spearman > rand.group_spearman + 0.2
    spearmans = [r.spearman for r in result.rows]
    assert spearmans == sorted(spearmans, reverse=True)


def test_result_serialises_and_renders(channel_grading) -> None:
    data = json.loads(json.dumps(channel_grading.to_dict(), allow_nan=False))
    assert data["oracle"] == "oracle" and data["granularity"] == "channel"
    assert {r["estimator"] for r in data["rows"]} == {*default_estimators(), "oracle"}
    assert set(data["rows"][0]["per_group"]) == {"0", "2", "4"}
    console = Console(record=True, width=150)
    console.print(channel_grading.table())
    text = console.export_text()
    assert "taylor" in text and "spearman" in text and "138 units in 3 groups" in text


def test_element_granularity_marks_activation_estimators_not_applicable(digits) -> None:
    result = grade_model(
        digits.model,
        data=digits.data,
        granularity="element",
        estimators=["magnitude", "activation", get_estimator("magnitude", p=2.0), "magnitude"],
        progress=False,
    )
    assert result.oracle == "oracle(sample=64)" and result.n_units == 3 * 64
    activation = result.row("activation")
    assert activation.status == "not applicable" and "channel" in activation.reason
    assert math.isnan(activation.spearman) and activation.n_units == 0
    assert result.rows[-1].estimator == "activation"  # rows without a correlation go last
    assert result.row("magnitude").n_units == 3 * 64
    # |w| and |w|^2 rank weights identically; the repeated entry gets its own label
    assert result.row("magnitude(p=2.0)").spearman == pytest.approx(
        result.row("magnitude").spearman
    )
    assert result.row("magnitude#2").spearman == result.row("magnitude").spearman


@dataclass(frozen=True)
class Broken(Estimator):
    name: ClassVar[str] = "broken"

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        raise DataError("this estimator needs integer labels")


def test_estimator_errors_are_recorded_not_raised(digits) -> None:
    groups = build_groups(digits.model, get_granularity("channel"), include=["4"])
    result = grade(digits.model, groups, digits.data, [Broken(), "random"], progress=False)
    assert result.row("broken").status == "error"
    assert "integer labels" in result.row("broken").reason
    assert result.row("random").status == "ok"
    with pytest.raises(DataError, match="needs data"):
        grade_model(digits.model, data=None, progress=False)  # type: ignore[arg-type]


def test_grading_leaves_the_model_unchanged(digits, model_state) -> None:
    model = copy.deepcopy(digits.model)
    model.train()
    x, y = digits.data.batches[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()  # gradients must survive too
    before = model_state.of(model)
    grade_model(model, data=digits.data, progress=False)
    before.assert_same(model)
