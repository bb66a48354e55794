"""Parameter counts, nonzeros and per-layer sparsity, on hand-worked tiny models."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from prunekit.masks import apply_masks, is_masked
from prunekit.measure import (
    LayerStats,
    count_nonzeros,
    count_params,
    effective_parameters,
    effective_state_dict,
    layer_sparsity,
)


def _linear_with_zeros() -> nn.Sequential:
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
        layer.bias.copy_(torch.tensor([0.0, 5.0]))
    return nn.Sequential(layer)


def _masked_linear() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(4, 2))
    for param in model.parameters():
        nn.init.ones_(param)
    mask = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    apply_masks(model, {"0.weight": mask})
    return model


def test_linear_with_known_zeros() -> None:
    model = _linear_with_zeros()
    assert count_params(model) == 8  # 6 weights + 2 biases
    assert count_nonzeros(model) == 4  # 1, 2, 3 and the bias 5
    assert layer_sparsity(model) == {"0": LayerStats(params=6, nonzeros=3, sparsity=0.5)}


def test_masked_model_counts_each_weight_once() -> None:
    model = _masked_linear()
    assert count_params(model) == 10  # not 18 (original + effective), masks are buffers
    assert count_nonzeros(model) == 7  # 5 unmasked weights + 2 biases
    assert layer_sparsity(model) == {"0": LayerStats(params=8, nonzeros=5, sparsity=0.375)}
    assert list(effective_parameters(model)) == ["0.bias", "0.weight"]


def test_effective_state_dict_looks_baked() -> None:
    model = _masked_linear()
    state = effective_state_dict(model)
    assert sorted(state) == ["0.bias", "0.weight"]
    expected = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    assert torch.equal(state["0.weight"], expected)


def test_measuring_leaves_the_model_as_it_was() -> None:
    model = _masked_linear()
    keys = list(model.state_dict())
    count_params(model), count_nonzeros(model), layer_sparsity(model), effective_state_dict(model)
    assert list(model.state_dict()) == keys
    assert is_masked(model, "0.weight")
    assert torch.equal(model.get_parameter("0.parametrizations.weight.original"), torch.ones(2, 4))


def test_tied_weight_counts_once() -> None:
    first, second = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    assert count_params(model) == 4
    apply_masks(model, {"0.weight": torch.tensor([[1.0, 0.0], [1.0, 1.0]])})
    assert count_params(model) == 4


def test_shared_module_counts_once() -> None:
    layer = nn.Linear(2, 3)
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(3, 2), layer)
    assert count_params(model) == 9 + 8  # the shared layer once, plus model[2]
    assert list(layer_sparsity(model)) == ["0", "2"]


def test_unruled_layers_are_measured_without_a_pruning_warning() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.PReLU(), nn.Bilinear(2, 2, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = layer_sparsity(model)
    assert list(stats) == ["0"]
    assert count_params(model) == 6 + 1 + 5  # Bilinear(2, 2, 1): 1x2x2 weight + 1 bias


@pytest.mark.parametrize(("params", "nonzeros", "sparsity"), [(0, 0, 0.0), (4, 1, 0.75)])
def test_layer_stats_of(params: int, nonzeros: int, sparsity: float) -> None:
    weight = torch.zeros(params)
    weight[:nonzeros] = 1.0
    assert LayerStats.of(weight) == LayerStats(params, nonzeros, sparsity)
