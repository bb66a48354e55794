"""Tables and verdicts for benchmarks/training_channels.py: medians over seeds, the issue's
targets (2x within 0.5 pp, 4x within 1.5 pp, prunekit's best >= Torch-Pruning's best)."""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import markdown_table

LIBRARIES = ("prunekit", "torch-pruning")


def summarise(model: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Median and min-max over seeds of every (target, arm)."""
    rows = []
    key = lambda r: (r["target"], r["library"], r["estimator"], r["schedule"], r["recovery"])  # noqa: E731
    for (target, lib, est, sched, rec), grouped in itertools.groupby(
        sorted(result["runs"], key=key), key
    ):
        runs = list(grouped)
        acc = [r["accuracy"] for r in runs]
        rows.append(
            {
                "model": model,
                "target": target,
                "library": lib,
                "estimator": est,
                "schedule": sched,
                "recovery": rec,
                "seeds": len(runs),
                "median": statistics.median(acc),
                "min": min(acc),
                "max": max(acc),
                "drop": result["dense_accuracy"] - statistics.median(acc),
                "macs_ratio": statistics.median(r["macs_ratio"] for r in runs),
                "params_ratio": statistics.median(r["params_ratio"] for r in runs),
            }
        )
    return rows


def verdicts(
    config: Mapping[str, Any], summary: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The issue's targets per (model, MAC target): prunekit's best median within ``tolerance``
    pp of dense, and at least Torch-Pruning's best median."""
    out = []
    for (model, target), grouped in itertools.groupby(summary, lambda r: (r["model"], r["target"])):
        rows = list(grouped)
        best = {
            lib: max(
                (r for r in rows if r["library"] == lib), key=lambda r: r["median"], default=None
            )
            for lib in LIBRARIES
        }
        pk, tpb = best["prunekit"], best["torch-pruning"]
        tol = _tolerance(config, target)
        out.append(
            {
                "model": model,
                "target": target,
                "tolerance_pp": tol,
                "prunekit_best": pk and _label(pk),
                "prunekit_drop": pk and pk["drop"],
                "torch_pruning_best": tpb and _label(tpb),
                "torch_pruning_drop": tpb and tpb["drop"],
                "within_tolerance": bool(pk and tol is not None and pk["drop"] <= tol),
                "prunekit_at_least_tp": bool(pk and tpb and pk["median"] >= tpb["median"]),
            }
        )
    return out


def _tolerance(config: Mapping[str, Any], target: Any) -> float | None:
    """The allowed accuracy drop at ``target`` (YAML keys are ints, JSON keys strings)."""
    tolerances = config["tolerance_pp"]
    return tolerances.get(target, tolerances.get(str(target)))


def _arm(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["target"], row["library"], row["estimator"], row["schedule"], row["recovery"])


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['library']} {row['estimator']} {row['schedule']} {row['recovery']}"


def markdown(results: Mapping[str, Any]) -> str:
    parts = []
    for model, result in results["models"].items():
        parts.append(
            f"**{model}**: dense {result['dense_accuracy']:.2f}%, "
            f"{result['dense_macs'] / 1e6:.2f} M MACs, {result['dense_params']:,} params"
        )
    header = [
        "model",
        "MACs target",
        "library",
        "estimator",
        "schedule",
        "recovery",
        "seeds",
        "median acc %",
        "[min-max]",
        "drop pp",
        "MACs ratio",
        "params ratio",
    ]
    rows = [
        [
            r["model"],
            f"{r['target']}x",
            r["library"],
            r["estimator"],
            r["schedule"],
            r["recovery"],
            r["seeds"],
            r["median"],
            f"{r['min']:.2f}-{r['max']:.2f}",
            f"{r['drop']:+.2f}",
            f"{r['macs_ratio']:.2f}x",
            f"{r['params_ratio']:.2f}x",
        ]
        for r in results["summary"]
    ]
    checks = [
        [
            v["model"],
            f"{v['target']}x",
            v["prunekit_best"],
            _pp(v["prunekit_drop"]),
            v["torch_pruning_best"],
            _pp(v["torch_pruning_drop"]),
            f"<= {v['tolerance_pp']}",
            "yes" if v["within_tolerance"] else "no",
            "yes" if v["prunekit_at_least_tp"] else "no",
        ]
        for v in results["verdicts"]
    ]
    check_header = [
        "model",
        "target",
        "prunekit best",
        "drop pp",
        "Torch-Pruning best",
        "drop pp",
        "tolerance",
        "within",
        "prunekit >= TP",
    ]
    return "\n\n".join(
        ["\n".join(parts), markdown_table(header, rows), markdown_table(check_header, checks)]
    )


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def plot(results: Mapping[str, Any], path: Path) -> None:
    """One panel per (model, MACs target): every arm's median test accuracy with its min-max
    over seeds, prunekit and Torch-Pruning in two colours, dense and the tolerance as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (
            model,
            target,
            [r for r in results["summary"] if (r["model"], r["target"]) == (model, target)],
        )
        for model, target in dict.fromkeys((r["model"], r["target"]) for r in results["summary"])
    ]
    height = max(len(rows) for _, _, rows in panels) * 0.28 + 1.8
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), height), squeeze=False)
    for ax, (model, target, rows) in zip(axes[0], panels, strict=True):
        rows = sorted(rows, key=lambda r: r["median"])
        dense = results["models"][model]["dense_accuracy"]
        tol = _tolerance(results["config"], target)
        for y, r in enumerate(rows):
            colour = "tab:blue" if r["library"] == "prunekit" else "tab:orange"
            err = [[r["median"] - r["min"]], [r["max"] - r["median"]]]
            ax.errorbar(r["median"], y, xerr=err, fmt="o", color=colour, capsize=2)
        ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=7)
        ax.axvline(dense, color="black", lw=1, label=f"dense {dense:.2f}%")
        if tol is not None:
            ax.axvline(dense - tol, color="grey", ls="--", lw=1, label=f"dense - {tol} pp")
        ax.set_xlabel("test accuracy (%), median and min-max over seeds")
        ax.set_title(f"{model}, {target}x fewer MACs")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def merge(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One result from several runs of the same dense models (e.g. two configs with the same
    budget and different arms): their arms pooled, summaries and verdicts recomputed, the
    first run's config (tolerances) kept. An arm (target, library, estimator, schedule,
    recovery) that a later run measured again is taken from the later run only."""
    first = runs[0]
    models: dict[str, Any] = {}
    for run in runs:
        for name, result in run["models"].items():
            if name in models and models[name]["dense_accuracy"] != result["dense_accuracy"]:
                raise ValueError(f"{name}: the runs start from different dense models")
            pooled = models.setdefault(name, {**result, "runs": []})
            again = {_arm(r) for r in result["runs"]}
            pooled["runs"] = [r for r in pooled["runs"] if _arm(r) not in again] + result["runs"]
    summary = [row for name, result in models.items() for row in summarise(name, result)]
    return {
        "config": first["config"],
        "models": models,
        "summary": summary,
        "verdicts": verdicts(first["config"], summary),
    }


def only_targets(run: Mapping[str, Any], targets: Sequence[float]) -> dict[str, Any]:
    """``run`` with only the measurements at the given MAC targets."""
    models = {
        name: {**result, "runs": [r for r in result["runs"] if r["target"] in targets]}
        for name, result in run["models"].items()
    }
    return {**run, "models": models}


def main() -> None:
    """``python benchmarks/channels_report.py RESULTS_JSON [MORE_JSON ...] --plot PNG
    [--markdown MD] [--targets 2 4]``: redraw finished runs, pooled into one table when several
    are given (``--targets`` keeps only those MAC targets)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--targets", type=float, nargs="+", default=None)
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.results]
    if args.targets is not None:
        runs = [only_targets(run, args.targets) for run in runs]
    results = merge(runs)
    plot(results, args.plot)
    print(f"wrote {args.plot}")
    if args.markdown is not None:
        args.markdown.write_text(markdown(results) + "\n")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
