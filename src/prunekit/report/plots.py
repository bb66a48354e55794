"""Plots of measurements, written as image files (PNG unless the path says otherwise).

Figures are built with :class:`matplotlib.figure.Figure` and saved through the Agg renderer,
never through ``pyplot``: no window opens, no global figure state is kept, and the process-wide
backend is left as it is. Each function creates the parent folders and returns the path written
(a path without a suffix gets ``.png``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prunekit.errors import ConfigError
from prunekit.measure.params import LayerStats

PathLike = str | os.PathLike[str]


def _save(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    if not out.suffix:
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out


def plot_layer_sparsity(
    layer_stats: Mapping[str, LayerStats], path: PathLike, *, title: str = "Sparsity per layer"
) -> Path:
    """Horizontal bar chart of each layer's sparsity (in %), layers top to bottom in model order."""
    if not layer_stats:
        raise ConfigError("plot_layer_sparsity: no layers to plot (layer_stats is empty)")
    names = list(layer_stats)
    values = [100 * layer_stats[n].sparsity for n in names]
    fig = Figure(figsize=(7, 1.2 + 0.3 * len(names)))
    ax = fig.add_subplot()
    ax.barh(range(len(names)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("sparsity (%)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_metric_vs_sparsity(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: PathLike,
    *,
    metric_name: str = "metric",
    title: str = "",
) -> Path:
    """One line per method: ``metric`` against sparsity, each curve's points sorted by sparsity.

    ``curves`` maps a label (an estimator or method) to ``(sparsity, metric)`` points; used for
    accuracy-vs-sparsity and per-layer sensitivity curves.
    """
    if not curves or not any(curves.values()):
        raise ConfigError("plot_metric_vs_sparsity: no points to plot (curves are empty)")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for label, points in curves.items():
        ordered = sorted(points)
        ax.plot(
            [100 * s for s, _ in ordered], [m for _, m in ordered], marker="o", label=str(label)
        )
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"{metric_name} vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_correlations(
    table: Mapping[str, Mapping[str, float]],
    path: PathLike,
    *,
    title: str = "Rank correlation with the loss-change oracle",
) -> Path:
    """Grouped bars: for each estimator (outer key), one bar per statistic (inner key).

    ``table`` is e.g. ``{"magnitude": {"spearman": 0.61, "kendall": 0.45}, ...}``; a NaN value
    (undefined correlation, e.g. from constant scores) is drawn as an empty bar labelled "n/a".
    """
    if not table:
        raise ConfigError("plot_correlations: no estimators to plot (table is empty)")
    estimators = list(table)
    stats = list(dict.fromkeys(s for row in table.values() for s in row))
    width = 0.8 / max(len(stats), 1)
    fig = Figure(figsize=(max(6.0, 1.1 * len(estimators)), 4.5))
    ax = fig.add_subplot()
    for i, stat in enumerate(stats):
        xs = [e + (i - (len(stats) - 1) / 2) * width for e in range(len(estimators))]
        ys = [table[est].get(stat, math.nan) for est in estimators]
        bars = ax.bar(xs, [0.0 if math.isnan(y) else y for y in ys], width=width, label=stat)
        labels = ["n/a" if math.isnan(y) else f"{y:.2f}" for y in ys]
        ax.bar_label(bars, labels=labels, fontsize="x-small", padding=2)
    ax.set_xticks(range(len(estimators)), estimators, rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylim(-1.05, 1.12)
    ax.set_ylabel("correlation")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if stats:
        ax.legend(fontsize="small")
    return _save(fig, path)
