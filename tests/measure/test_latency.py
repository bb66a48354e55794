"""Latency: positive, ordered percentiles; modes and thread count restored; bad input named."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.masks import apply_masks
from prunekit.measure import Latency, measure_latency


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor, *, scale: float = 1.0) -> Tensor:
        return self.fc(x) * scale


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))


def test_latency_is_positive_and_ordered() -> None:
    result = measure_latency(_model(), torch.randn(2, 8), warmup=1, repeats=7)
    assert isinstance(result, Latency)
    assert result.repeats == 7
    assert 0.0 < result.p10_ms <= result.median_ms <= result.p90_ms


def test_modes_are_restored_per_module() -> None:
    model = _model().train()
    model[2].eval()  # a frozen norm inside a training model stays frozen
    measure_latency(model, torch.randn(2, 8), warmup=1, repeats=2)
    assert [m.training for m in model] == [True, True, False]
    assert model.training


def test_masked_model_and_keyword_inputs() -> None:
    model = _Scaled()
    apply_masks(model, {"fc.weight": torch.ones(2, 4)})
    inputs = {"x": torch.randn(1, 4), "scale": 2.0}
    assert measure_latency(model, inputs, warmup=0, repeats=2).median_ms > 0.0


def test_thread_count_is_restored() -> None:
    before = torch.get_num_threads()
    measure_latency(_model(), torch.randn(2, 8), warmup=1, repeats=2, threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"), ({"threads": 0}, "threads")],
)
def test_bad_settings_are_refused(kwargs: dict[str, int], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        measure_latency(_model(), torch.randn(2, 8), **kwargs)


def test_bad_inputs_name_the_failing_module() -> None:
    model = _model().train()
    with pytest.raises(DataError, match=r"measuring latency: .* in module '0'"):
        measure_latency(model, torch.randn(2, 3), warmup=1, repeats=1)
    assert model.training
