"""Every registered searcher runs a few trials within the budget; the AMC agent learns from
its rewards; a NaN objective fails a trial and the search goes on."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from torch import nn

from prunekit.budget import Target
from prunekit.config import make_config
from prunekit.errors import ConfigError, UnknownNameError
from prunekit.search import SEARCHERS, AmcSampler, search
from prunekit.search.prepare import build_space, prepare

from .conftest import batches


def width(model: nn.Module) -> float:
    """Hidden units kept: a deterministic score that prefers wide first layers."""
    return float(model[0].out_features) + 0.1 * float(model[2].out_features)


@pytest.mark.parametrize("name", SEARCHERS.names())
def test_every_searcher_stays_within_the_budget(name: str, mlp_case: Any) -> None:
    model, x, data = mlp_case
    result = search(
        model, x, data=data, target={"macs": 0.5}, searcher=name, trials=4, storage=":memory:",
        objective=width, n_batches=2, progress=False,
    )  # fmt: skip
    assert len(result.trials) == 4
    assert all(t.state == "complete" and t.macs <= 0.5 + 1e-9 for t in result.trials)
    assert result.best.score == max(t.score for t in result.trials)
    assert result.front  # never empty with complete trials


def test_unknown_searcher_suggests_a_name(mlp_case: Any) -> None:
    model, x, data = mlp_case
    with pytest.raises(UnknownNameError, match="did you mean 'nsga2'"):
        search(model, x, data=data, target="macs=0.5", searcher="nsga", storage=":memory:")


def test_nan_objective_fails_the_trial_and_the_search_goes_on(mlp_case: Any) -> None:
    model, x, data = mlp_case
    calls = []

    def sometimes_nan(m: nn.Module) -> float:
        calls.append(1)
        return math.nan if len(calls) % 2 else width(m)

    result = search(
        model, x, data=data, target={"macs": 0.5}, searcher="random", trials=4,
        storage=":memory:", objective=sometimes_nan, progress=False,
    )  # fmt: skip
    assert [t.state for t in result.trials] == ["failed", "complete", "failed", "complete"]
    assert result.trials[0].error == "the objective is nan"
    assert result.best.number in (1, 3)


def _study_with(keeps_and_rewards: list[tuple[float, float]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    dist = {"a": FloatDistribution(0.1, 1.0)}
    for keep, reward in keeps_and_rewards:
        study.add_trial(
            optuna.trial.create_trial(params={"a": keep}, distributions=dist, value=reward)
        )
    return study


def test_amc_policy_moves_toward_rewarded_actions() -> None:
    sampler = AmcSampler(["a"], [0.1], [[1.0, 1.0]], seed=0, lr=0.5)
    study = _study_with([(0.2, 0.0), (0.9, 1.0), (0.3, 0.0), (0.8, 1.0)])
    theta = sampler.policy(study)
    mean_keep = sampler.to_keep(0, float(theta @ sampler.state(0, 1.0)))
    assert mean_keep > 0.55  # the untrained policy's mean is the middle, 0.55
    # rewards reversed: the policy moves the other way
    reversed_study = _study_with([(0.2, 1.0), (0.9, 0.0), (0.3, 1.0), (0.8, 0.0)])
    theta = sampler.policy(reversed_study)
    assert sampler.to_keep(0, float(theta @ sampler.state(0, 1.0))) < 0.55


def test_amc_refuses_two_objectives() -> None:
    sampler = AmcSampler(["a"], [0.1], [[1.0, 1.0]])
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ConfigError, match="one objective"):
        sampler.policy(study)


@pytest.mark.parametrize("name", SEARCHERS.names())
def test_the_first_trial_is_the_uniform_allocation(name: str) -> None:
    """Trial 0 is every layer at keep 1.0 projected onto the budget (the same fraction of the
    way to each floor, then units given back while the budget allows); not without the start."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4),
    ).eval()  # fmt: skip
    x, data = torch.randn(1, 1, 8, 8), batches((1, 8, 8), 4, 4)
    config = make_config(None, {"granularity": "channel", "sparsity": 0.0, "scope": "layer"})
    space = build_space(prepare(model, x, config, None), Target("macs", 0.5), tolerance=0.02)
    uniform = space.project(dict.fromkeys(space.names, 0.0), fill=name != "nsga2")
    runs = {
        start: search(model, x, data=data, target={"macs": 0.5}, searcher=name, trials=2,
                      seed=3, storage=":memory:", objective=lambda m: float(m[0].out_channels),
                      n_batches=2, start_uniform=start, progress=False)
        for start in (True, False)
    }  # fmt: skip
    assert runs[True].trials[0].sparsities == pytest.approx(uniform)
    assert runs[True].uniform is runs[True].trials[0] and runs[True].trials[0].uniform
    assert runs[False].uniform is None
    assert runs[False].trials[0].sparsities != pytest.approx(uniform)


def test_random_candidates_depend_only_on_seed_and_trial_number(mlp_case: Any) -> None:
    model, x, data = mlp_case
    runs = [
        search(model, x, data=data, target={"macs": 0.5}, searcher="random", trials=3,
               storage=":memory:", objective=width, seed=7, progress=False)
        for _ in range(2)
    ]  # fmt: skip
    assert [t.sparsities for t in runs[0].trials] == [t.sparsities for t in runs[1].trials]
    torch.testing.assert_close(
        torch.tensor([t.score for t in runs[0].trials]),
        torch.tensor([t.score for t in runs[1].trials]),
    )


@pytest.mark.parametrize("objective", ["proxy", "finetune"])
def test_named_objectives_score_held_out_accuracy(objective: str, cnn_case: Any) -> None:
    model, x, data = cnn_case
    result = search(
        model, x, data=data, target={"macs": 0.5}, searcher="random", trials=2,
        storage=":memory:", objective=objective, n_batches=2, finetune_steps=2, progress=False,
    )  # fmt: skip
    # 2 held-out batches of 8: accuracy is a multiple of 1/16
    assert all(0.0 <= t.score <= 1.0 and (t.score * 16).is_integer() for t in result.trials)


def test_proxy_needs_data(mlp_case: Any) -> None:
    model, x, _ = mlp_case
    with pytest.raises(ConfigError, match="needs data"):
        search(model, x, data=None, target={"macs": 0.5}, storage=":memory:", progress=False)
