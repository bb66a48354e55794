import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from prunekit.data import make_loader
from prunekit.errors import ConfigError, DataError, UnknownNameError
from prunekit.models import LeNet300100
from prunekit.train import evaluate, seed_everything, train


def one_weight(value: float = 1.0) -> nn.Linear:
    layer = nn.Linear(1, 1, bias=False)
    nn.init.constant_(layer.weight, value)
    return layer


def regression_batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` batches of the single sample x = 1, y = 3."""
    return [(torch.ones(1, 1), torch.full((1, 1), 3.0))] * n


def test_one_sgd_step_matches_the_hand_worked_update() -> None:
    # loss = (w - 3)^2 = 4 at w = 1; dloss/dw = 2 (w - 3) = -4; w <- 1 - 0.1 * (-4) = 1.4
    model = one_weight(1.0)
    stats = train(
        model,
        regression_batches(1),
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        loss_fn=F.mse_loss,
        progress=False,
    )
    assert model.weight.item() == pytest.approx(1.4)
    assert (stats.steps, stats.epochs, stats.samples) == (1, 1, 1)
    assert stats.losses == (4.0,) and stats.loss == 4.0
    assert math.isnan(stats.accuracy)  # regression targets: no accuracy


def test_on_step_sees_every_step_across_epochs_and_max_steps_stops() -> None:
    seen: list[tuple[int, float]] = []
    model = one_weight()

    def record(step: int, m: nn.Module) -> None:
        seen.append((step, m.weight.item()))

    stats = train(
        model,
        regression_batches(3),
        epochs=5,
        max_steps=4,
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        loss_fn=F.mse_loss,
        progress=False,
        on_step=record,
    )
    assert [step for step, _ in seen] == [1, 2, 3, 4]
    assert seen[0][1] == pytest.approx(1.4)  # called after the optimizer step
    assert (stats.steps, stats.epochs, stats.samples) == (4, 2, 4)


def test_a_ready_optimizer_is_used_as_given() -> None:
    model = one_weight(1.0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.25)
    train(model, regression_batches(1), optimizer=sgd, lr=99.0, loss_fn=F.mse_loss, progress=False)
    assert model.weight.item() == pytest.approx(2.0)  # 1 - 0.25 * (-4)


def test_train_restores_each_submodule_mode() -> None:
    model = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    model.eval()
    model[1].train()
    x = torch.randn(4, 1)
    train(model, [(x, x)], loss_fn=F.mse_loss, progress=False)
    assert [model.training, model[0].training, model[1].training] == [False, False, True]


def test_empty_loader_is_refused() -> None:
    with pytest.raises(DataError, match="yielded no batches"):
        train(one_weight(), [], progress=False)


def test_one_shot_iterator_is_refused_on_its_second_epoch() -> None:
    with pytest.raises(DataError, match=r"epoch 2"):
        train(
            one_weight(), iter(regression_batches(2)), epochs=2, loss_fn=F.mse_loss, progress=False
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"optimizer": "adamm"}, UnknownNameError, "did you mean 'adam'"),
        ({"lr": 0.0}, ConfigError, "lr must be positive"),
        ({"momentum": 1.0}, ConfigError, "momentum must be in"),
        ({"epochs": 0}, ConfigError, "epochs must be a positive integer"),
        ({"max_steps": -1}, ConfigError, "max_steps must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        train(one_weight(), regression_batches(1), progress=False, **kwargs)


def test_lenet_300_100_learns_512_mnist_samples(mnist_train_set: TensorDataset) -> None:
    seed_everything(0)  # tests/conftest.py runs torch on one thread
    loader = make_loader(mnist_train_set, batch_size=64, shuffle=True, seed=0, limit=512)
    model = LeNet300100()
    stats = train(model, loader, epochs=100, max_steps=150, lr=1e-3, progress=False)
    result = evaluate(model, make_loader(mnist_train_set, 256, limit=512))
    assert stats.steps == 150 and stats.epochs == 19  # 8 batches per epoch
    assert stats.losses[-1] < stats.losses[0]
    assert result.n == 512 and result.accuracy > 0.8


def test_seed_everything_repeats_every_global_generator() -> None:
    import random

    import numpy as np

    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
