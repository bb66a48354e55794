"""Rich tables of measurements: before vs after, and per-layer sparsity.

Numbers are shown in full where they are exact (counts with thousands separators), sizes in
binary units, sparsity in percent. The change column shows ``×ratio`` (after / before) for
quantities that scale, and a signed difference for fractions (percentage points) and task metrics.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from prunekit.measure.format import (
    MISSING,
    format_bytes,
    format_change,
    format_count,
    format_fraction,
    format_metric,
    format_ms,
    format_ratio,
    format_value,
)
from prunekit.measure.params import layer_sparsity
from prunekit.measure.summary import ModelStats, compare

__all__ = [
    "MISSING",
    "format_bytes",
    "format_change",
    "format_count",
    "format_fraction",
    "format_metric",
    "format_ms",
    "format_ratio",
    "format_value",
]


def before_after_table(before: ModelStats, after: ModelStats, *, title: str = "") -> Table:
    """Every quantity of two measurements side by side, with its ratio or change."""
    table = Table(title=title or None)
    table.add_column("quantity")
    for name in ("before", "after", "change"):
        table.add_column(name, justify="right")
    for row in compare(before, after):
        table.add_row(
            row.name,
            format_value(row, row.before),
            format_value(row, row.after),
            format_change(row),
        )
    return table


def layer_table(model: nn.Module, *, title: str = "") -> Table:
    """Per prunable layer: its type, weight entries, nonzeros and sparsity (masks applied)."""
    table = Table(title=title or None)
    table.add_column("layer")
    table.add_column("type")
    for name in ("params", "nonzeros", "sparsity"):
        table.add_column(name, justify="right")
    for name, stats in layer_sparsity(model).items():
        table.add_row(
            name,
            type_before_parametrizations(model.get_submodule(name)).__name__,
            format_count(stats.params),
            format_count(stats.nonzeros),
            format_fraction(stats.sparsity),
        )
    return table


def render(table: Table, *, width: int = 120) -> str:
    """The table as plain text (no colours), for tests, logs and files."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.export_text(styles=False)
