"""Text for measured values: counts with separators, sizes in binary units, fractions in percent,
ratios as ``×0.50``; one formatter per :class:`~prunekit.measure.Row` kind, shared by the
summary of a result, the terminal tables and the HTML report."""

from __future__ import annotations

import math
from collections.abc import Callable

from prunekit.measure.summary import Row

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


def format_value(row: Row, value: float | None) -> str:
    """A row's value as tables show it (``-`` when missing)."""
    return MISSING if value is None else _FORMATS[row.kind](value)


def format_change(row: Row) -> str:
    """``×ratio`` for quantities that scale, percentage points for fractions, a signed
    difference for task metrics."""
    if row.kind == "fraction":
        return MISSING if row.change is None else f"{100 * row.change:+.1f} pp"
    if row.kind == "metric":
        return MISSING if row.change is None else f"{row.change:+.4g}"
    return MISSING if row.ratio is None else format_ratio(row.ratio)
