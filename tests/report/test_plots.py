"""Plots write non-empty PNG files, creating folders; empty inputs are refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from prunekit.errors import ConfigError
from prunekit.measure import LayerStats
from prunekit.report import plot_correlations, plot_layer_sparsity, plot_metric_vs_sparsity

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_SIGNATURE


def test_layer_sparsity_plot(tmp_path: Path) -> None:
    stats = {"conv1": LayerStats(100, 50, 0.5), "fc": LayerStats(10, 1, 0.9)}
    out = plot_layer_sparsity(stats, tmp_path / "deep" / "folder" / "layers.png")
    assert out == tmp_path / "deep" / "folder" / "layers.png"
    assert _is_png(out)


def test_metric_vs_sparsity_plot(tmp_path: Path) -> None:
    curves = {
        "magnitude": [(0.5, 0.95), (0.0, 0.98), (0.9, 0.7)],
        "random": [(0.0, 0.98), (0.5, 0.8)],
    }
    out = plot_metric_vs_sparsity(curves, tmp_path / "acc", metric_name="accuracy", title="MLP")
    assert out == tmp_path / "acc.png"  # a suffix-less path gets .png
    assert _is_png(out)


def test_correlations_plot_with_a_missing_value(tmp_path: Path) -> None:
    table = {
        "magnitude": {"spearman": 0.61, "kendall": 0.45},
        "taylor": {"spearman": 0.88, "kendall": 0.7},
        "random": {"spearman": math.nan, "kendall": -0.02},
    }
    assert _is_png(plot_correlations(table, tmp_path / "corr.png"))


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="layer_stats is empty"):
        plot_layer_sparsity({}, tmp_path / "a.png")
    with pytest.raises(ConfigError, match="curves are empty"):
        plot_metric_vs_sparsity({"m": []}, tmp_path / "b.png")
    with pytest.raises(ConfigError, match="table is empty"):
        plot_correlations({}, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []
