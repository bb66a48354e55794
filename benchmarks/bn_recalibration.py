"""BatchNorm recalibration as a recovery step on its own: accuracy of a channel-pruned CNN before
and after re-estimating its BatchNorm statistics, with no weight changed.

    python benchmarks/bn_recalibration.py benchmarks/configs/bn_recalibration.yaml [--quick]

Each of ``models`` (a registry name, optional ``kwargs`` such as ``{width: 32}``, training
epochs) is trained once and cached like the channel benchmark's (``channels_setup.load_context``).
Each ``sparsity`` removes that fraction of channels, ranked by each of ``estimators`` (data-free:
``magnitude`` is the L1 filter norm, ``bn_scale`` the BatchNorm scale), ``scope: layer`` taking
the same fraction from every layer and ``global`` ranking all channels together after per-group
normalisation, through ``prunekit.prune`` with surgery and verification; then
``recalibrate_batchnorm`` runs ``k`` training batches for each ``k`` in ``batches`` (0 = the
pruned model with the dense model's statistics). Seeds change the recalibration batches.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from channels_setup import Context, accuracy, load_context, train_loader
from common import environment, markdown_table, parse_args, write_results
from torch import nn

import prunekit
from prunekit.masks import clone_model
from prunekit.recovery import recalibrate_batchnorm

Row = dict[str, Any]


def pruned_model(ctx: Context, estimator: str, sparsity: float, scope: str) -> nn.Module:
    """``sparsity`` of the channels removed by ``estimator``, BatchNorm statistics as they were."""
    result = prunekit.prune(
        ctx.dense,
        ctx.example,
        sparsity=sparsity,
        granularity="channel",
        estimator=estimator,
        scope=scope,  # type: ignore[arg-type]
        normalize="mean",
        recalibrate=False,  # the statistics stay the dense model's (sliced): measured as k = 0
    )
    return result.model


def recalibrated(ctx: Context, model: nn.Module, batches: int, seed: int) -> float:
    """Test accuracy after recalibrating a copy of ``model`` on ``batches`` training batches."""
    if batches == 0:
        return accuracy(model, ctx.test_loader)
    copy = clone_model(model)
    recalibrate_batchnorm(copy, train_loader(ctx, seed), max_batches=batches)
    return accuracy(copy, ctx.test_loader)


def model_label(spec: Mapping[str, Any]) -> str:
    """``small-vgg`` or, for a variant, ``small-vgg (width=32)`` / ``small-vgg (slimming=1e-4)``."""
    settings = dict(spec.get("kwargs") or {})
    if spec.get("slimming"):
        settings["slimming"] = f"{spec['slimming']:g}"
    extra = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return f"{spec['name']} ({extra})" if extra else spec["name"]


def measure(ctx: Context, label: str, config: Mapping[str, Any]) -> list[Row]:
    rows = []
    grid = itertools.product(config["estimators"], config["sparsities"], config["scopes"])
    for estimator, sparsity, scope in grid:
        model = pruned_model(ctx, estimator, sparsity, scope)
        for batches in config["batches"]:
            seeds = config["seeds"] if batches else [0]
            accs = [recalibrated(ctx, model, batches, seed) for seed in seeds]
            row = {
                "model": label,
                "estimator": estimator,
                "sparsity": sparsity,
                "scope": scope,
                "batches": batches,
                "median": statistics.median(accs),
                "min": min(accs),
                "max": max(accs),
            }
            print(row, flush=True)
            rows.append(row)
    return rows


def markdown(dense: Mapping[str, float], rows: Sequence[Row]) -> str:
    header = [
        "model",
        "dense acc %",
        "ranked by",
        "channels removed",
        "scope",
        "recalibration batches",
        "median acc %",
        "[min-max]",
    ]
    table = [
        [
            r["model"],
            round(dense[r["model"]], 2),
            r["estimator"],
            f"{r['sparsity']:.0%}",
            r["scope"],
            r["batches"],
            r["median"],
            f"{r['min']:.2f}-{r['max']:.2f}",
        ]
        for r in rows
    ]
    return markdown_table(header, table)


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    start = time.perf_counter()
    dense: dict[str, float] = {}
    rows: list[Row] = []
    for spec in config["models"]:
        label = model_label(spec)
        ctx = load_context(config, spec)
        dense[label] = accuracy(ctx.dense, ctx.test_loader)
        print(f"{label}: dense {dense[label]:.2f}%", flush=True)
        rows += measure(ctx, label, config)
        results = {
            "config": config,
            "environment": environment(),
            "dense_accuracy": dense,
            "rows": rows,
            "seconds": time.perf_counter() - start,
        }
        write_results(out, results, markdown(dense, rows))  # after every model


if __name__ == "__main__":
    main()
