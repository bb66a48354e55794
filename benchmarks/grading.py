"""Estimator grading: rank correlation of every estimator's scores with the loss-change oracle.

For each seed the scoring batches are a different shuffle of the training set; the table reports
the median (and range) over seeds. Usage::

    python benchmarks/grading.py benchmarks/configs/lenet5_grading.yaml [--quick]
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common import (
    environment,
    loaders,
    markdown_table,
    parse_args,
    prepare,
    write_results,
)

from prunekit.analysis.grading import grade_model
from prunekit.report.plots import plot_correlations


def run(config: Mapping[str, Any], out: Path) -> dict[str, Any]:
    setup = prepare(config)
    model, dense_acc = setup.dense, setup.dense_accuracy
    runs = []
    for seed in config["seeds"]:
        scoring, _ = loaders(
            config["dataset"],
            config.get("batch_size", 128),
            config.get("train_limit"),
            1,
            seed=seed,
        )
        result = grade_model(
            model,
            data=scoring,
            granularity=config["granularity"],
            n_batches=config["batches"],
            estimators=config.get("estimators"),
            exclude=config.get("exclude", []),
            progress=False,
        )
        print(f"seed {seed}: oracle {result.oracle_seconds:.1f}s over {result.n_units} units")
        runs.append(result.to_dict())
    return {
        "config": dict(config),
        "dense_accuracy": dense_acc,
        "runs": runs,
        "summary": summarise(runs),
        "environment": environment(),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median and range over seeds of each estimator's correlations and time."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for row in run["rows"]:
            by_name.setdefault(row["estimator"], []).append(row)
    summary = {}
    for name, rows in by_name.items():
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            summary[name] = {"status": rows[0]["status"], "reason": rows[0]["reason"]}
            continue
        stats: dict[str, Any] = {"status": "ok"}
        for key in ("spearman", "kendall", "group_spearman", "seconds"):
            values = [r[key] for r in ok if r[key] is not None]
            stats[key] = statistics.median(values) if values else None
            stats[key + "_range"] = [min(values), max(values)] if values else None
        summary[name] = stats
    return dict(sorted(summary.items(), key=lambda kv: -(kv[1].get("spearman") or -2)))


def markdown(results: Mapping[str, Any]) -> str:
    header = [
        "estimator",
        "Spearman (median)",
        "range",
        "Kendall (median)",
        "Spearman per layer",
        "seconds",
    ]
    rows = []
    for name, s in results["summary"].items():
        if s["status"] != "ok":
            rows.append([name, "-", "-", "-", "-", f"{s['status']}: {s['reason']}"])
            continue
        lo, hi = s["spearman_range"]
        rows.append(
            [
                name,
                f"{s['spearman']:.3f}",
                f"{lo:.3f}..{hi:.3f}",
                f"{s['kendall']:.3f}",
                f"{s['group_spearman']:.3f}",
                f"{s['seconds']:.2f}",
            ]
        )
    config = results["config"]
    head = (
        f"{config['model']['name']} on {config['dataset']} (test accuracy "
        f"{results['dense_accuracy']:.2f}%), {config['granularity']} granularity, "
        f"{config['batches']} batches of {config.get('batch_size', 128)}, "
        f"{len(config['seeds'])} seeds; oracle = loss change when the unit is zeroed."
    )
    return head + "\n\n" + markdown_table(header, rows)


def main() -> None:
    config, out = parse_args(__doc__)
    results = run(config, out)
    write_results(out, results, markdown(results))
    ok = {
        k: {"spearman": v["spearman"], "kendall": v["kendall"]}
        for k, v in results["summary"].items()
        if v["status"] == "ok"
    }
    plot_correlations(ok, out / "grading.png")


if __name__ == "__main__":
    main()
