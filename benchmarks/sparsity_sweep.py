"""Accuracy against sparsity for several pruning methods, one-shot and after a short fine-tune.

Every method prunes the same trained dense model at the same sparsities with the same fine-tune;
peers (``torch.nn.utils.prune``) run in the same process. Usage::

    python benchmarks/sparsity_sweep.py benchmarks/configs/lenet300_sweep.yaml [--quick]
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common import (
    accuracy,
    environment,
    markdown_table,
    parse_args,
    prepare,
    write_results,
)
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader

import prunekit
from prunekit.report.plots import plot_metric_vs_sparsity
from prunekit.train import seed_everything, train

Pruner = Callable[[nn.Module, float, Mapping[str, Any], DataLoader[Any]], nn.Module]


def prunekit_method(
    model: nn.Module, sparsity: float, spec: Mapping[str, Any], data: DataLoader[Any]
) -> nn.Module:
    """prunekit's global selection with the method's estimator and granularity."""
    result = prunekit.prune(
        model,
        sparsity=sparsity,
        granularity=spec.get("granularity", "element"),
        estimator=spec["estimator"],
        estimator_options=spec.get("options", {}),
        data=data,
        n_batches=spec.get("batches", 8),
        min_keep=0,
    )
    return result.model


def torch_method(
    model: nn.Module, sparsity: float, spec: Mapping[str, Any], data: DataLoader[Any]
) -> nn.Module:
    """The peer: ``torch.nn.utils.prune.global_unstructured`` with L1Unstructured."""
    pruned = copy.deepcopy(model)
    layers = [(m, "weight") for m in pruned.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=sparsity)
    return pruned


KINDS: dict[str, Pruner] = {"prunekit": prunekit_method, "torch": torch_method}


def weight_sparsity(model: nn.Module) -> float:
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    total = sum(w.numel() for w in weights)
    return 1.0 - sum(int((w != 0).sum()) for w in weights) / total


def run(config: Mapping[str, Any], out: Path) -> dict[str, Any]:
    setup = prepare(config)
    train_loader, test_loader, dense, dense_acc = (
        setup.train,
        setup.test,
        setup.dense,
        setup.dense_accuracy,
    )
    ft = config["finetune"]
    rows = []
    for method in config["methods"]:
        for sparsity in config["sparsities"]:
            seed_everything(config.get("seed", 0))
            start = time.perf_counter()
            pruned = KINDS[method["kind"]](dense, sparsity, method, train_loader)
            prune_s = time.perf_counter() - start
            one_shot = accuracy(pruned, test_loader)
            train(pruned, train_loader, epochs=ft["epochs"], lr=ft["lr"], progress=False)
            tuned = accuracy(pruned, test_loader)
            row = {
                "method": method["name"],
                "sparsity": sparsity,
                "achieved": weight_sparsity(pruned),
                "one_shot": one_shot,
                "finetuned": tuned,
                "prune_seconds": prune_s,
            }
            print(row)
            rows.append(row)
    results = {
        "config": dict(config),
        "dense_accuracy": dense_acc,
        "rows": rows,
        "environment": environment(),
    }
    _plots(results, out)
    return results


def _plots(results: Mapping[str, Any], out: Path) -> None:
    for key, label in (("one_shot", "one-shot"), ("finetuned", "after fine-tuning")):
        curves: dict[str, list[tuple[float, float]]] = {}
        for row in results["rows"]:
            curves.setdefault(row["method"], [(0.0, results["dense_accuracy"])]).append(
                (row["sparsity"], row[key])
            )
        plot_metric_vs_sparsity(
            curves, out / f"accuracy_{key}.png", metric_name="test accuracy (%)", title=f"{label}"
        )


def markdown(results: Mapping[str, Any]) -> str:
    dense = results["dense_accuracy"]
    header = [
        "method",
        "sparsity",
        "achieved",
        "one-shot acc",
        "fine-tuned acc",
        "error vs dense (pp)",
        "prune s",
    ]
    rows = [
        [
            r["method"],
            f"{r['sparsity']:.2f}",
            f"{r['achieved']:.4f}",
            r["one_shot"],
            r["finetuned"],
            f"{dense - r['finetuned']:+.2f}",
            f"{r['prune_seconds']:.2f}",
        ]
        for r in results["rows"]
    ]
    return f"Dense test accuracy: {dense:.2f}%\n\n" + markdown_table(header, rows)


def main() -> None:
    config, out = parse_args(__doc__)
    results = run(config, out)
    write_results(out, results, markdown(results))


if __name__ == "__main__":
    main()
