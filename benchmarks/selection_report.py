"""The tables of benchmarks/selection_defaults.py: medians over seeds of every (model, target,
strategy, estimator), one table per model and target, and each strategy's better estimator."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from common import markdown_table

Row = dict[str, Any]

KEY = ("model", "target", "strategy", "estimator")


def summarise(runs: Sequence[Row]) -> list[Row]:
    """Medians over seeds of every (model, target, strategy, estimator)."""
    cells: dict[tuple[Any, ...], list[Row]] = {}
    for row in runs:
        cells.setdefault(tuple(row[k] for k in KEY), []).append(row)
    out = []
    for key, rows in cells.items():
        med = {
            m: statistics.median(r[m] for r in rows)
            for m in ("accuracy", "oneshot_accuracy", "macs_ratio", "params_ratio")
        }
        spread = [r["accuracy"] for r in rows]
        out.append(
            {**dict(zip(KEY, key, strict=True)), **med, "min": min(spread), "max": max(spread)}
            | {"seeds": len(rows)}
        )
    return out


def markdown(results: Mapping[str, Any]) -> str:
    """One table per model and target: every arm's medians, best first."""
    order = {n: i for i, n in enumerate(results["config"]["strategies"])}
    parts = []
    for name, info in results["models"].items():
        for target in sorted({r["target"] for r in results["summary"] if r["model"] == name}):
            rows = [r for r in results["summary"] if r["model"] == name and r["target"] == target]
            rows.sort(key=lambda r: (-r["accuracy"], order[r["strategy"]]))
            header = ["strategy", "estimator", "fine-tuned acc. %", "min-max", "one-shot %"]
            table = [
                [
                    r["strategy"],
                    r["estimator"],
                    r["accuracy"],
                    f"{r['min']:.2f}-{r['max']:.2f}",
                    r["oneshot_accuracy"],
                    f"{r['macs_ratio']:.2f}x",
                    r["seeds"],
                ]
                for r in rows
            ]
            title = f"### {name}, {target:g}x fewer MACs (dense {info['dense_accuracy']:.2f}%)"
            header += ["MACs ratio", "seeds"]
            parts.append(title + "\n\n" + markdown_table(header, table))
    return "\n\n".join([best_of_estimators(results), *parts])


def best_of_estimators(results: Mapping[str, Any]) -> str:
    """What users see: each strategy's better estimator (fine-tuned median) in every model and
    target, and its mean over them."""
    summary = results["summary"]
    cells = sorted({(r["model"], r["target"]) for r in summary}, key=lambda c: (c[0], c[1]))
    rows = []
    for strategy in results["config"]["strategies"]:
        best = []
        for model, target in cells:
            found = [
                r["accuracy"]
                for r in summary
                if (r["model"], r["target"], r["strategy"]) == (model, target, strategy)
            ]
            best.append(max(found) if found else None)
        present = [b for b in best if b is not None]
        mean = statistics.mean(present) if len(present) == len(best) else "-"
        rows.append([strategy, *("-" if b is None else b for b in best), mean])
    header = ["strategy", *(f"{m} {t:g}x" for m, t in cells), "mean"]
    return "### Best estimator per strategy (fine-tuned median %)\n\n" + markdown_table(
        header, rows
    )
