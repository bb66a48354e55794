"""measure() on a hand-worked masked model, and compare() of two records."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, DataError
from prunekit.masks import apply_masks, is_masked
from prunekit.measure import ModelStats, Row, compare, dense_size_bytes, measure, sparse_size_bytes


def _half_masked() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    for param in model.parameters():
        nn.init.ones_(param)
    mask = torch.ones(4, 8)
    mask[:, :4] = 0.0
    apply_masks(model, {"0.weight": mask})
    return model


def _accuracy(model: nn.Module) -> Mapping[str, float]:
    return {"accuracy": 0.75}


def test_measure_hand_worked_model() -> None:
    model = _half_masked()
    stats = measure(model, torch.randn(1, 8), eval_fn=_accuracy, latency=False)
    # params: 8*4 + 4 + 4*2 + 2 = 46; 16 masked weights are zero
    assert (stats.params, stats.nonzeros) == (46, 30)
    assert stats.sparsity == pytest.approx(16 / 46)
    assert (stats.macs, stats.effective_macs) == (32 + 8, 16 + 8)
    assert stats.dense_bytes == dense_size_bytes(model)
    assert stats.sparse_bytes == sparse_size_bytes(model)
    assert stats.latency_ms is None
    assert stats.metric == {"accuracy": 0.75}


def test_measure_reads_the_model_only() -> None:
    model = _half_masked().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = measure(model, torch.randn(3, 8), eval_fn=_accuracy)
    assert stats.latency_ms is not None and stats.latency_ms > 0.0
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert model.training and is_masked(model, "0.weight")


def test_eval_fn_runs_in_eval_mode() -> None:
    seen: list[bool] = []

    def record(model: nn.Module) -> Mapping[str, float]:
        seen.append(model.training)
        return {"loss": 1}

    model = _half_masked().train()
    assert measure(model, torch.randn(1, 8), eval_fn=record, latency=False).metric == {"loss": 1.0}
    assert seen == [False] and model.training


def test_failing_or_malformed_eval_fn_is_named() -> None:
    def broken(model: nn.Module) -> Mapping[str, float]:
        raise RuntimeError("no data")

    with pytest.raises(DataError, match="eval_fn 'broken' failed: RuntimeError: no data"):
        measure(_half_masked(), torch.randn(1, 8), eval_fn=broken, latency=False)
    with pytest.raises(ConfigError, match="must return a mapping"):
        measure(_half_masked(), torch.randn(1, 8), eval_fn=lambda m: 0.5, latency=False)  # type: ignore[arg-type,return-value]


def _stats(params: int, sparsity: float, latency: float | None, **metric: float) -> ModelStats:
    nonzeros = round(params * (1 - sparsity))
    return ModelStats(params, nonzeros, sparsity, 1000, nonzeros * 10, 400, 100, latency, metric)


def test_compare_ratios_and_changes() -> None:
    rows = {r.name: r for r in compare(_stats(100, 0.0, 2.0, acc=0.9), _stats(100, 0.75, None))}
    assert list(rows) == [
        "params",
        "nonzeros",
        "sparsity",
        "MACs",
        "effective MACs",
        "size (dense)",
        "size (sparse)",
        "latency",
        "acc",
    ]
    assert rows["nonzeros"] == Row("nonzeros", "count", 100, 25, 0.25, -75)
    assert rows["sparsity"] == Row("sparsity", "fraction", 0.0, 0.75, None, 0.75)
    assert rows["latency"] == Row("latency", "ms", 2.0, None, None, None)
    assert rows["acc"] == Row("acc", "metric", 0.9, None, None, None)
