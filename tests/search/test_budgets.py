"""Latency and size budgets: the size model worked out by hand on the MLP and checked against
the real safetensors bytes; a latency search in PyTorch eager measures its table once and
prices every trial, its projection and the front with it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from prunekit.budget import RuntimeTimer
from prunekit.config import make_config
from prunekit.errors import ConfigError
from prunekit.measure import dense_size_bytes
from prunekit.search import search
from prunekit.search.budget import Budget, parse_budget
from prunekit.search.prepare import build_space, prepare
from prunekit.surgery.apply import apply_surgery

from .conftest import batches, cnn, mlp


def test_parse_budget_reads_size_and_the_target_metrics() -> None:
    assert parse_budget({"size": 0.3}) == Budget("size", 0.3)
    assert parse_budget("size=0.25") == Budget("size", 0.25)
    assert parse_budget({"macs": 0.5}) == Budget("macs", 0.5)
    assert parse_budget({"latency": 0.5, "runtime": "torch"}) == Budget("latency", 0.5, "torch")
    assert parse_budget({"latency": 0.5}).runtime == "onnxruntime"
    with pytest.raises(ConfigError, match=r"size=1\.5 is outside \(0, 1\]"):
        parse_budget({"size": 1.5})


def _space(model: nn.Module, x: torch.Tensor, budget: Any, **kw: Any) -> Any:
    config = make_config(None, {"granularity": "channel", "sparsity": 0.0})
    prepared = prepare(model, x, config, None)
    return prepared, build_space(prepared, budget, 0.02, **kw)


def test_size_model_counts_the_bytes_of_every_kept_tensor() -> None:
    _, s = _space(mlp(), torch.randn(1, 4), {"size": 0.5})
    size = s.costs["size"]
    # float32: 4 bytes per entry; hidden widths k1, k2 keep 4k1 + k1 (layer 0), k1k2 + k2
    # (layer 2), 3k2 + 3 (layer 4): dense 193 entries = 772 bytes; the output bias (12 bytes)
    # and the file's header do not shrink
    assert size.dense - size.fixed == 772 - 12
    assert size.dense == dense_size_bytes(mlp())
    sparsities = {"0": 0.4, "2": 0.7}  # k1 = 6, k2 = 3: 30 + 21 + 9 entries shrink
    assert s.ratio(sparsities, "size") * size.dense - size.fixed == pytest.approx(4 * 60)


@pytest.mark.parametrize("sparsities", [{"3": 0.5, "0": 0.25}, {"0": 0.875, "3": 0.0}])
def test_size_model_matches_the_real_file_with_batchnorm_buffers(
    sparsities: dict[str, float],
) -> None:
    model = cnn()
    prepared, s = _space(model, torch.randn(1, 1, 8, 8), {"size": 0.9})
    pruned, _ = apply_surgery(prepared.model, prepared.groups, s.selection(sparsities))
    predicted = s.ratio(sparsities, "size") * dense_size_bytes(model)
    # the header is held fixed; in the real file each tensor's shape and two data offsets may
    # lose a digit or two
    assert abs(predicted - dense_size_bytes(pruned)) <= 4 * len(pruned.state_dict())


class CountingTimer(RuntimeTimer):
    """A real PyTorch-eager timer that counts the models it times."""

    calls = 0

    def time(self, models: Any, example_inputs: Any) -> dict[str, float]:
        CountingTimer.calls += 1
        return super().time(models, example_inputs)


def wide_cnn() -> nn.Module:
    """32 channels: the latency table's widths (multiples of 8) are 8, 16, 24 and 32."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4),
    ).eval()  # fmt: skip


def _latency_search(trials: int, searcher: str = "random") -> Any:
    model, x = wide_cnn(), torch.randn(1, 1, 32, 32)
    CountingTimer.calls = 0
    result = search(
        model, x, data=batches((1, 32, 32), 4, 4), target={"latency": 0.8, "runtime": "torch"},
        searcher=searcher, trials=trials, storage=":memory:", n_batches=2, progress=False,
        timer=CountingTimer("torch", warmup=1, repeats=5),
    )  # fmt: skip
    return result, CountingTimer.calls


def test_latency_search_measures_the_table_once_and_records_each_trials_cost() -> None:
    _, calls_one = _latency_search(1)
    four, calls_four = _latency_search(4)
    # the table, then the best trial's model against the dense one, are timed; no trial is
    assert calls_one == calls_four > 1
    assert four.target == Budget("latency", 0.8, "torch")
    for t in four.completed:
        assert 0.0 < t.latency <= 0.8 + 1e-9  # projected onto the budget by the table
    assert four.best.cost("latency") == four.best.latency
    assert four.measured is not None and 0.0 < four.measured < 1.5
    assert four.to_dict()["target"] == {"latency": 0.8, "runtime": "torch"}


def test_latency_front_is_accuracy_against_the_latency_cost() -> None:
    result, _ = _latency_search(4, searcher="nsga2")
    front = result.front
    assert front and all(t.latency <= 0.8 + 1e-9 for t in front)
    assert [t.latency for t in front] == sorted(t.latency for t in front)
    for t in result.completed:  # nothing on the front is beaten on both score and latency
        assert not any(t.score > f.score and t.latency < f.latency for f in front)
