"""Trial objectives: hand-worked scores on a two-class linear model."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.search.objectives import OBJECTIVES, make_objective


def zero_linear() -> nn.Module:
    """Logits [0, 0] for every input: arg-max class 0, cross-entropy ln 2 whatever the target."""
    model = nn.Linear(2, 2)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


def two_targets() -> list[Any]:
    return [(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]))]


def class_zero() -> list[Any]:
    return [(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))]


def test_proxy_scores_accuracy_and_proxy_loss_minus_cross_entropy() -> None:
    # one sample of each class, both predicted 0: accuracy 1/2, loss ln 2
    assert make_objective("proxy", [], two_targets())(zero_linear()) == 0.5
    loss = make_objective("proxy-loss", [], two_targets())(zero_linear())
    assert loss == pytest.approx(-math.log(2), abs=1e-6)


def test_finetune_loss_after_one_adam_step() -> None:
    # Adam's first step moves every parameter by lr * sign(gradient): the bias to [0.1, -0.1]
    # and weight[:, 0] to [0.1, -0.1], so the logits of x = [1, 0] are [0.2, -0.2] and the
    # cross-entropy of class 0 is ln(1 + e^-0.4) = 0.513015.
    objective = make_objective("finetune-loss", class_zero(), class_zero(), steps=1, lr=0.1)
    assert objective(zero_linear()) == pytest.approx(-0.513015, abs=1e-5)
    accuracy = make_objective("finetune", class_zero(), class_zero(), steps=1, lr=0.1)
    assert accuracy(zero_linear()) == 1.0


def test_more_finetune_steps_cycle_the_batches_and_lower_the_loss() -> None:
    one = make_objective("finetune-loss", class_zero(), class_zero(), steps=1, lr=0.1)
    three = make_objective("finetune-loss", class_zero(), class_zero(), steps=3, lr=0.1)
    assert three(zero_linear()) > one(zero_linear())


def test_function_objective_gets_the_model() -> None:
    objective = make_objective(lambda m: float(m.bias.sum()) + 3.0, [], [])
    assert objective(zero_linear()) == 3.0
    assert not objective.trains and not objective.uses_loss


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_named_objective_scores_a_finite_number(name: str) -> None:
    objective = make_objective(name.upper(), two_targets(), two_targets(), steps=2)
    assert objective.trains == name.startswith("finetune")
    assert objective.uses_loss == name.endswith("-loss")
    assert math.isfinite(objective(zero_linear()))


@pytest.mark.parametrize(
    ("name", "held_out", "steps", "message"),
    [
        ("accuracy", two_targets(), 20, "objective must be one of"),
        ("proxy", [], 20, "needs data"),
        ("finetune-loss", two_targets(), 0, "steps must be >= 1"),
    ],
)
def test_bad_objectives_are_config_errors(
    name: str, held_out: list[Any], steps: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_objective(name, [], held_out, steps=steps)


def test_finetune_score_does_not_depend_on_the_callers_random_state() -> None:
    # dropout draws from the random state: the trial's own seed makes the score reproducible in
    # any process, and the caller's generator is left where it was
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    data = [(torch.randn(16, 2), torch.randint(0, 2, (16,))) for _ in range(2)]
    objective = make_objective("finetune-loss", data, data, steps=4, lr=0.05)
    scores = []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        before = torch.random.get_rng_state()
        scores.append(objective(copy.deepcopy(dense)))
        assert torch.equal(torch.random.get_rng_state(), before)
    assert scores[0] == scores[1]
