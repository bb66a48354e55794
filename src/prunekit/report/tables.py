"""Rich tables of measurements: before vs after, and per-layer sparsity.

Numbers are shown in full where they are exact (counts with thousands separators), sizes in
binary units, sparsity in percent. The change column shows ``×ratio`` (after / before) for
quantities that scale, and a signed difference for fractions (percentage points) and task metrics.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from prunekit.measure.params import layer_sparsity
from prunekit.measure.summary import ModelStats, Row, compare

MISSING = "-"


def format_count(value: float) -> str:
    """``235200`` -> ``"235,200"``."""
    return f"{round(value):,}"


def format_bytes(value: float) -> str:
    """``512`` -> ``"512 B"``, ``1536`` -> ``"1.5 KiB"``, up to GiB."""
    if abs(value) < 1024:
        return f"{round(value)} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def format_fraction(value: float) -> str:
    """``0.5`` -> ``"50.0%"``."""
    return f"{100 * value:.1f}%"


def format_metric(value: float) -> str:
    """Four significant digits, without exponents below 10,000."""
    return f"{value:.4g}" if abs(value) < 1e4 or not math.isfinite(value) else f"{value:,.0f}"


def format_ratio(value: float) -> str:
    """``0.5`` -> ``"×0.50"``; two significant digits below 0.01 (``"×0.0012"``)."""
    return f"×{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"×{value:.2g}"


def format_ms(value: float) -> str:
    """``1.23456`` -> ``"1.235 ms"``."""
    return f"{value:.3f} ms"


_FORMATS: dict[str, Callable[[float], str]] = {
    "count": format_count,
    "bytes": format_bytes,
    "fraction": format_fraction,
    "ms": format_ms,
    "metric": format_metric,
}


def _value(row: Row, value: float | None) -> str:
    return MISSING if value is None else _FORMATS[row.kind](value)


def _change(row: Row) -> str:
    if row.kind == "fraction":
        return MISSING if row.change is None else f"{100 * row.change:+.1f} pp"
    if row.kind == "metric":
        return MISSING if row.change is None else f"{row.change:+.4g}"
    return MISSING if row.ratio is None else format_ratio(row.ratio)


def before_after_table(before: ModelStats, after: ModelStats, *, title: str = "") -> Table:
    """Every quantity of two measurements side by side, with its ratio or change."""
    table = Table(title=title or None)
    table.add_column("quantity")
    for name in ("before", "after", "change"):
        table.add_column(name, justify="right")
    for row in compare(before, after):
        table.add_row(row.name, _value(row, row.before), _value(row, row.after), _change(row))
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
