"""Before/after and per-layer tables render and show the measured numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.masks import apply_masks
from prunekit.measure import ModelStats
from prunekit.report import before_after_table, layer_table, render
from prunekit.report.tables import (
    format_bytes,
    format_count,
    format_fraction,
    format_metric,
    format_ratio,
)


def _stats(nonzeros: int, sparsity: float, latency: float, accuracy: float) -> ModelStats:
    return ModelStats(
        params=238_510,
        nonzeros=nonzeros,
        sparsity=sparsity,
        macs=235_200,
        effective_macs=235_200 * nonzeros // 238_510,
        dense_bytes=3 * 1024**2,
        sparse_bytes=1536,
        latency_ms=latency,
        metric={"accuracy": accuracy},
    )


def test_before_after_table_shows_values_and_changes() -> None:
    before = _stats(238_510, 0.0, 2.0, 0.98)
    after = _stats(119_255, 0.5, 1.0, 0.97)
    text = render(before_after_table(before, after, title="mlp"))
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    assert "238,510" in lines["params"] and "×1.00" in lines["params"]
    assert "119,255" in lines["nonzeros"] and "×0.50" in lines["nonzeros"]
    assert "50.0%" in lines["sparsity"] and "+50.0 pp" in lines["sparsity"]
    assert "235,200" in lines["MACs"]
    assert "3.0 MiB" in text and "1.5 KiB" in text
    assert "2.000 ms" in lines["latency"] and "×0.50" in lines["latency"]
    assert "0.98" in lines["accuracy"] and "-0.01" in lines["accuracy"]
    assert "mlp" in text


def test_layer_table_names_layers_types_and_sparsity() -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Conv1d(1, 1, 1))
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    apply_masks(model, {"0.weight": mask})
    rows = [line.split() for line in render(layer_table(model)).splitlines() if "│" in line]
    cells = [[c for c in row if c != "│"] for row in rows]
    assert ["0", "Linear", "8", "4", "50.0%"] in cells  # the class, not ParametrizedLinear
    assert ["2", "Conv1d", "1", "1", "0.0%"] in cells


def test_render_is_plain_text() -> None:
    text = render(before_after_table(_stats(1, 0.0, 1.0, 1.0), _stats(1, 0.0, 1.0, 1.0)))
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 120


@pytest.mark.parametrize(
    ("value", "expected"), [(512, "512 B"), (1536, "1.5 KiB"), (3 * 1024**3, "3.0 GiB")]
)
def test_format_bytes(value: int, expected: str) -> None:
    assert format_bytes(value) == expected


def test_other_formats() -> None:
    assert format_count(235_200) == "235,200"
    assert format_fraction(0.125) == "12.5%"
    assert format_metric(0.912345) == "0.9123"
    assert format_metric(123_456.0) == "123,456"
    assert format_ratio(0.25) == "×0.25"
    assert format_ratio(0.00123) == "×0.0012"
