import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import DataError
from prunekit.train import EvalResult, evaluate

# logits = x (identity weights): predictions [0, 1, 1] against labels [0, 0, 1]
INPUTS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
LABELS = torch.tensor([0, 0, 1])
BATCHES = [(INPUTS[:2], LABELS[:2]), (INPUTS[2:], LABELS[2:])]


class Recorder(nn.Module):
    """Identity logits that record the mode and grad state they were called in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        nn.init.eye_(self.linear.weight)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.linear(x)


def test_loss_and_accuracy_are_per_sample_means_over_uneven_batches() -> None:
    # cross-entropy: log(1 + e^-2) = 0.126928, log(1 + e^1) = 1.313262, log(1 + e^-2)
    result = evaluate(Recorder(), BATCHES)
    assert result.n == 3
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.loss == pytest.approx((0.126928 + 1.313262 + 0.126928) / 3, abs=1e-6)


def test_max_batches_stops_early() -> None:
    result = evaluate(Recorder(), BATCHES, max_batches=1)
    assert result == EvalResult(pytest.approx((0.126928 + 1.313262) / 2, abs=1e-6), 0.5, 2)


def test_runs_in_eval_mode_without_grad_and_restores_training_mode() -> None:
    model = Recorder().train()
    evaluate(model, BATCHES)
    assert model.calls == [(False, False), (False, False)]
    assert model.training and torch.is_grad_enabled()


def test_restores_mode_after_an_error() -> None:
    model = Recorder().train()
    with pytest.raises(DataError, match="expected batches of"):
        evaluate(model, [(INPUTS, LABELS, LABELS)])
    assert model.training


def test_custom_loss_and_non_class_outputs_give_nan_accuracy() -> None:
    x = torch.ones(4, 1)
    result = evaluate(nn.Linear(1, 1), [(x, 2 * x)], loss_fn=F.mse_loss)
    assert result.n == 4 and math.isnan(result.accuracy) and result.loss >= 0


def test_empty_loader_is_refused() -> None:
    with pytest.raises(DataError, match="yielded no batches"):
        evaluate(Recorder(), [])
