"""Lottery tickets on MNIST: IMP with rewinding vs one-shot magnitude vs random re-init.

    python benchmarks/training_lottery.py benchmarks/configs/training_lottery.yaml [--quick]

Writes ``results.json``, ``results.md`` and ``curve.png`` (median over seeds, min-max band).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from common import accuracy, environment, loaders, markdown_table, parse_args, write_results
from torch import nn

from prunekit.masks import clone_model
from prunekit.methods import TicketConfig, find_ticket
from prunekit.models import build_model
from prunekit.schedules import Iterative, prune_further
from prunekit.train import seed_everything, train

ROOT = Path(__file__).resolve().parent


def run_seed(config: dict[str, Any], method: str, seed: int) -> list[tuple[float, float]]:
    """(fraction of weights left, test accuracy) after every training run."""
    train_loader, test_loader = loaders(
        config["dataset"],
        config["batch_size"],
        config.get("train_limit"),
        config.get("test_limit"),
        seed,
    )
    seed_everything(seed)
    model = build_model(config["model"]["name"])
    epochs, lr = config["epochs"], config["lr"]

    def train_round(m: nn.Module, k: int, on_step: Any) -> None:
        seed_everything(seed * 1000 + k)
        train(m, train_loader, epochs=epochs, lr=lr, progress=False, on_step=on_step)

    if method == "one-shot":
        train_round(model, 0, None)
        points = [(1.0, accuracy(model, test_loader))]
        for level in Iterative(config["final_sparsity"], config["rounds"]).levels():
            pruned = clone_model(model)
            prune_further(pruned, level)
            train_round(pruned, 1, None)
            points.append((1.0 - level, accuracy(pruned, test_loader)))
            del pruned
        return points
    ticket = TicketConfig(
        final_sparsity=config["final_sparsity"],
        rounds=config["rounds"],
        rewind_step=config["late_rewind_step"] if method == "imp-late" else 0,
        reinit=method == "reinit",
        reinit_seed=seed + 777,
    )
    result = find_ticket(model, train_round, ticket, metric=lambda m: accuracy(m, test_loader))
    return [(1.0 - r.sparsity, r.metric) for r in result.rounds]


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(1)
    raw: dict[str, list[list[tuple[float, float]]]] = {}
    for method in config["methods"]:
        raw[method] = [run_seed(config, method, seed) for seed in config["seeds"]]
        print(method, "done", flush=True)
    levels = [p[0] for p in raw[config["methods"][0]][0]]
    rows = []
    summary: dict[str, list[dict[str, float]]] = {}
    for method, runs in raw.items():
        summary[method] = []
        for i, left in enumerate(levels):
            accs = [run[i][1] for run in runs]
            med = statistics.median(accs)
            summary[method].append(
                {"weights_left": left, "median": med, "min": min(accs), "max": max(accs)}
            )
            rows.append([method, f"{100 * left:.1f}%", med, f"{min(accs):.2f}-{max(accs):.2f}"])
    table = markdown_table(["method", "weights left", "median acc %", "range"], rows)
    write_results(
        out, {"config": config, "env": environment(), "summary": summary, "raw": raw}, table
    )
    _plot(summary, out / "curve.png")


def _plot(summary: dict[str, list[dict[str, float]]], path: Path) -> None:
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


if __name__ == "__main__":
    main()
