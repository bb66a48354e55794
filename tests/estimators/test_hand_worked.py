"""Every estimator on a two-layer linear net whose gradients are worked out by hand
(see the ``two_layer`` fixture)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.estimators import ScoringData, get_estimator
from prunekit.granularity import Channel, Element, build_groups


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, target)


def scores(
    name: str, model: nn.Module, granularity: object, data: ScoringData | None, **opts: object
) -> dict[str, list[float]]:
    groups = build_groups(model, granularity)  # type: ignore[arg-type]
    result = get_estimator(name, **opts).score(model, groups, data)
    return {k: [round(v, 4) for v in s.tolist()] for k, s in result.items()}


def test_magnitude(two_layer: nn.Module) -> None:
    assert scores("magnitude", two_layer, Channel(), None) == {"0": [3.0, 7.0], "1": [2.0]}
    assert scores("magnitude", two_layer, Channel(), None, p=2) == {"0": [5.0, 25.0], "1": [2.0]}
    assert scores("magnitude", two_layer, Element(), None)["0"] == [1.0, 2.0, 3.0, 4.0]


def test_gradient(two_layer: nn.Module, two_layer_data: ScoringData) -> None:
    assert scores("gradient", two_layer, Element(), two_layer_data) == {
        "0": [8.0, 8.0, 8.0, 8.0],
        "1": [24.0, 56.0],
    }


def test_taylor_squares_the_unit_sum_of_g_times_w(
    two_layer: nn.Module, two_layer_data: ScoringData
) -> None:
    # g*w for W1 = [[-8, -16], [24, 32]], for W2 = [-24, 56]
    assert scores("taylor", two_layer, Element(), two_layer_data) == {
        "0": [64.0, 256.0, 576.0, 1024.0],
        "1": [576.0, 3136.0],
    }
    # neuron 0: (-8 - 16)^2, neuron 1: (24 + 32)^2; output neuron: (-24 + 56)^2
    assert scores("taylor", two_layer, Channel(), two_layer_data) == {
        "0": [576.0, 3136.0],
        "1": [1024.0],
    }


def test_taylor_averages_squares_over_batches_not_squares_of_means(two_layer: nn.Module) -> None:
    x = torch.tensor([[1.0, 1.0]])
    data = ScoringData(
        [(x, torch.tensor([[0.0]])), (x, torch.tensor([[-4.0]]))], loss_fn=mse, progress=False
    )
    # second batch has zero loss and zero gradient: mean of (32^2, 0) = 512
    assert scores("taylor", two_layer, Channel(), data)["1"] == [512.0]


def test_fisher(two_layer: nn.Module, two_layer_data: ScoringData) -> None:
    # 1/2 * g^2 * w^2 with one batch
    assert scores("fisher", two_layer, Element(), two_layer_data)["1"] == [288.0, 1568.0]


def test_hessian_is_exact_when_the_hessian_is_diagonal() -> None:
    # L = mean over 2 samples of (w.x)^2 with x1 = [1, 0], x2 = [0, 2]: H = diag(1, 4) exactly,
    # so every Rademacher probe gives the diagonal; OBD saliency = 1/2 h w^2 with w = [3, 5]
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 5.0]]))
    data = ScoringData(
        [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))], loss_fn=mse, progress=False
    )
    assert scores("hessian", model, Element(), data) == {"0": [4.5, 50.0]}


def test_hessian_estimate_converges_to_the_exact_diagonal(
    two_layer: nn.Module, two_layer_data: ScoringData
) -> None:
    # exact diag: d2L/dW2_j^2 = 2 h_j^2 = [18, 98]; d2L/dW1_jk^2 = 2 (W2_j x_k)^2 = 2
    result = scores("hessian", two_layer, Element(), two_layer_data, samples=3000)
    expected_w2 = [0.5 * 18 * 1, 0.5 * 98 * 1]
    expected_w1 = [0.5 * 2 * w * w for w in (1.0, 2.0, 3.0, 4.0)]
    assert result["1"] == pytest.approx(expected_w2, rel=0.1, abs=1.0)
    assert result["0"] == pytest.approx(expected_w1, rel=0.15, abs=2.0)


def test_oracle_is_the_true_loss_change(two_layer: nn.Module, two_layer_data: ScoringData) -> None:
    # remove neuron 0: out = -7, loss 49 (+33); neuron 1: out = 3, loss 9 (-7); output: loss 0 (-16)
    assert scores("oracle", two_layer, Channel(), two_layer_data) == {
        "0": [33.0, -7.0],
        "1": [-16.0],
    }


def test_sampled_oracle_leaves_other_units_nan(
    two_layer: nn.Module, two_layer_data: ScoringData
) -> None:
    result = scores("oracle", two_layer, Element(), two_layer_data, sample=1)
    assert sum(not math.isnan(v) for v in result["0"]) == 1


def test_activation_and_apoz(two_layer: nn.Module, two_layer_data: ScoringData) -> None:
    assert scores("activation", two_layer, Channel(), two_layer_data) == {
        "0": [3.0, 7.0],
        "1": [4.0],
    }
    # h = [3, 7] both positive (no zeros after ReLU); out = -4 would be zeroed by a ReLU
    assert scores("apoz", two_layer, Channel(), two_layer_data) == {"0": [1.0, 1.0], "1": [0.0]}


def test_mutual_info_of_a_perfect_predictor_is_log_two() -> None:
    # unit 0 copies x, which equals the label's sign; unit 1 is constant
    model = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [0.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([[-1.0], [-1.0], [1.0], [1.0]])
    data = ScoringData([(x, torch.tensor([0, 0, 1, 1]))], progress=False)
    result = scores("mutual_info", model, Channel(), data, bins=2)
    assert result["0"] == pytest.approx([math.log(2), 0.0], abs=1e-4)


def test_random_is_reproducible_and_seed_dependent(two_layer: nn.Module) -> None:
    a = scores("random", two_layer, Element(), None, seed=1)
    assert a == scores("random", two_layer, Element(), None, seed=1)
    assert a != scores("random", two_layer, Element(), None, seed=2)
