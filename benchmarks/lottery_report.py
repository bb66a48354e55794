"""Tables, verdicts and the plot for benchmarks/training_lottery.py: medians over seeds and the
issue's targets (tickets at <= 20% of the weights match or beat the dense net; at 10x fewer
weights, within 0.1 pp of the dense error)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import markdown_table

Points = list[tuple[float, float]]
Summary = dict[str, list[dict[str, float]]]

TICKET_LEVEL = 0.2
"""Tickets should match or beat the dense net at this fraction of the weights and below."""
COMPRESSION_LEVEL = 0.1
"""... and at this fraction (10x fewer weights) be within ``ERROR_TOLERANCE_PP`` of dense."""
ERROR_TOLERANCE_PP = 0.1


def summarise(raw: Mapping[str, Sequence[Points]]) -> Summary:
    """Median and min-max over seeds at every level of every method."""
    summary: Summary = {}
    for method, runs in raw.items():
        summary[method] = []
        for i, (left, _) in enumerate(runs[0]):
            accs = [run[i][1] for run in runs]
            summary[method].append(
                {
                    "weights_left": left,
                    "median": statistics.median(accs),
                    "min": min(accs),
                    "max": max(accs),
                }
            )
    return summary


def verdicts(summary: Summary) -> list[dict[str, Any]]:
    """Per method, against its own dense point (the first; the same run for every method):
    the levels <= 20% whose median matches or beats dense, the lowest level down to which every
    level <= 20% does, and whether the first level with 10x fewer weights is within 0.1 pp."""
    out = []
    for method, points in summary.items():
        dense = points[0]["median"]
        low = [p for p in points if p["weights_left"] <= TICKET_LEVEL + 1e-9]
        matching = [p["weights_left"] for p in low if p["median"] >= dense]
        down_to = None
        for p in low:
            if p["median"] < dense:
                break
            down_to = p["weights_left"]
        tenfold = next((p for p in points if p["weights_left"] <= COMPRESSION_LEVEL + 1e-9), None)
        out.append(
            {
                "method": method,
                "dense": dense,
                "levels_matching_dense": matching,
                "matches_dense_down_to": down_to,
                "tenfold_level": tenfold and tenfold["weights_left"],
                "tenfold_median": tenfold and tenfold["median"],
                "tenfold_within_tolerance": bool(
                    tenfold and tenfold["median"] >= dense - ERROR_TOLERANCE_PP
                ),
            }
        )
    return out


def markdown(summary: Summary, checks: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [method, f"{100 * p['weights_left']:.1f}%", p["median"], f"{p['min']:.2f}-{p['max']:.2f}"]
        for method, points in summary.items()
        for p in points
    ]
    check_rows = [
        [
            c["method"],
            c["dense"],
            ", ".join(f"{100 * x:.1f}%" for x in c["levels_matching_dense"]) or "none",
            _pct(c["matches_dense_down_to"]),
            f"{_pct(c['tenfold_level'])}: " + _num(c["tenfold_median"]),
            "yes" if c["tenfold_within_tolerance"] else "no",
        ]
        for c in checks
    ]
    check_header = [
        "method",
        "dense median %",
        "levels <= 20% at or above dense",
        "every level <= 20% at or above dense, down to",
        "first level <= 10%: median %",
        f"within {ERROR_TOLERANCE_PP} pp of dense",
    ]
    return "\n\n".join(
        [
            markdown_table(["method", "weights left", "median acc %", "range"], rows),
            markdown_table(check_header, check_rows),
        ]
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def plot(summary: Summary, path: Path) -> None:
    """Median test accuracy vs weights left (log scale, 100% on the left), min-max bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in summary.items():
        x = [100 * p["weights_left"] for p in points]
        ax.plot(x, [p["median"] for p in points], marker="o", label=method)
        ax.fill_between(x, [p["min"] for p in points], [p["max"] for p in points], alpha=0.2)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights left (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
