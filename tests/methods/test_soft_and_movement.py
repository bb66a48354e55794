import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.masks import masks_of
from prunekit.methods import MovementPruning, SoftFilterPruning
from prunekit.schedules import Polynomial
from prunekit.train import train

DATA = [
    (torch.randn(16, 10, generator=torch.Generator().manual_seed(i)), torch.arange(16) % 3)
    for i in range(4)
]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 3))  # tanh'(0) = 1


def test_soft_filter_zeroes_without_masking_then_finalizes() -> None:
    model = _mlp()
    sfp = SoftFilterPruning(0.5, frequency=1, exclude=("2",))
    assert sfp(1, model)
    zero_rows = (model[0].weight.abs().sum(dim=1) == 0) & (model[0].bias == 0)
    assert int(zero_rows.sum()) == 10
    assert not parametrize.is_parametrized(model[0])
    train(model, DATA, epochs=1, lr=1e-2, progress=False)
    assert int((model[0].weight.abs().sum(dim=1) == 0).sum()) < 10  # they can grow back
    sfp.finalize(model)
    assert int((masks_of(model)["0.weight"].sum(dim=1) == 0).sum()) == 10


def test_movement_scores_learn_and_masks_follow_schedule() -> None:
    model = _mlp()
    movement = MovementPruning(model, Polynomial(0.75, begin_step=0, end=8, frequency=1))
    train(model, DATA, epochs=3, lr=1e-2, progress=False, on_step=movement)
    scores = movement.parts["0.weight"].scores
    assert float(scores.abs().sum()) > 0  # scores received gradient
    masks = movement.finalize(model)
    assert int((masks["0.weight"] == 0).sum()) == 150
    assert int((masks_of(model)["2.weight"] == 0).sum()) == 45
    assert torch.equal(
        model[0].weight, model[0].parametrizations.weight.original * masks["0.weight"]
    )
