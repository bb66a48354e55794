"""Non-finite or empty data is refused up front, naming the batch and the position."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import prunekit
from prunekit.errors import DataError
from prunekit.estimators.data import ScoringData
from prunekit.graph.tracer import trace


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def _with(value: float, where: tuple[int, int], shape: tuple[int, int] = (5, 4)) -> torch.Tensor:
    x = torch.randn(shape)
    x[where] = value
    return x


def _labels(n: int = 5) -> torch.Tensor:
    return torch.arange(n) % 3


def test_scoring_batch_with_nan_names_batch_and_position() -> None:
    good = (torch.randn(5, 4), _labels())
    bad = (_with(float("nan"), (2, 1)), _labels())
    with pytest.raises(DataError, match=r"batch 1 .*NaN.*\[0\].*\(2, 1\)"):
        ScoringData([good, bad])


def test_loader_batch_with_inf_is_refused() -> None:
    batches = [(torch.randn(5, 4), _labels()), (_with(float("inf"), (4, 3)), _labels())]
    with pytest.raises(DataError, match=r"batch 1 .*inf.*\(4, 3\)"):
        ScoringData.from_loader(iter(batches))


def test_non_finite_in_a_dict_batch_names_the_key() -> None:
    batch = {"x": _with(float("-inf"), (0, 0)), "y": _labels()}
    with pytest.raises(DataError, match=r"batch 0 .*\['x'\].*\(0, 0\)"):
        ScoringData([batch], forward=lambda model, b: (model(b["x"]), b["y"]))


def test_empty_batch_is_refused() -> None:
    with pytest.raises(DataError, match="batch 0 .*empty"):
        ScoringData([(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))])


@pytest.mark.parametrize("estimator", ["apoz", "mutual_info", "activation"])
def test_all_nan_batch_never_gives_equal_scores(estimator: str) -> None:
    data = [(torch.full((5, 4), float("nan")), _labels())]
    with pytest.raises(DataError, match="batch 0"):
        prunekit.prune(_mlp(), granularity="channel", sparsity=0.5, estimator=estimator,
                       data=data)  # fmt: skip


@pytest.mark.parametrize("estimator", ["apoz", "mutual_info"])
def test_empty_batch_never_gives_equal_scores(estimator: str) -> None:
    data = [(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))]
    with pytest.raises(DataError, match="empty"):
        prunekit.prune(_mlp(), granularity="channel", sparsity=0.5, estimator=estimator,
                       data=data)  # fmt: skip


def test_trace_refuses_non_finite_example_inputs() -> None:
    with pytest.raises(DataError, match=r"example inputs .*NaN.*\(3, 2\)"):
        trace(_mlp(), _with(float("nan"), (3, 2)))


def test_structural_prune_refuses_before_running(state_of: Any) -> None:
    model = _mlp()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    before = state_of(model)
    with pytest.raises(DataError, match=r"example inputs .*inf.*\(1, 0\)"):
        prunekit.prune(model, _with(float("inf"), (1, 0)), granularity="channel", sparsity=0.5)
    assert calls == []
    assert state_of(model) == before


def test_keyword_example_inputs_name_the_key() -> None:
    class Keyed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(DataError, match=r"\['x'\].*\(0, 1\)"):
        trace(Keyed(), {"x": _with(float("nan"), (0, 1))})


def test_layer_pruning_refuses_non_finite_example_inputs() -> None:
    from prunekit.graph.blocks import find_residual_blocks

    with pytest.raises(DataError, match=r"example inputs .*NaN.*\(0, 0\)"):
        find_residual_blocks(_mlp(), _with(float("nan"), (0, 0)))
