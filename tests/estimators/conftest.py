import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.estimators import ScoringData


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, target)


@pytest.fixture
def two_layer() -> nn.Sequential:
    """h = W1 x, out = W2 h with W1 = [[1, 2], [3, 4]], W2 = [[1, -1]] (no biases).

    For x = [1, 1] and target 0 under MSE: h = [3, 7], out = -4, loss = 16,
    dL/dW2 = [-24, -56], dL/dW1 = [[-8, -8], [8, 8]].
    """
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
    return model


@pytest.fixture
def two_layer_data() -> ScoringData:
    return ScoringData(
        [(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0]]))], loss_fn=mse, progress=False
    )
