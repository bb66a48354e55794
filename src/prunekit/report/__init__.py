"""Reports of measurements: rich tables (text) and matplotlib plots (image files)."""

from prunekit.report.plots import plot_correlations, plot_layer_sparsity, plot_metric_vs_sparsity
from prunekit.report.tables import before_after_table, layer_table, render

__all__ = [
    "before_after_table",
    "layer_table",
    "plot_correlations",
    "plot_layer_sparsity",
    "plot_metric_vs_sparsity",
    "render",
]
