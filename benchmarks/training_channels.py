"""Channel pruning to 2x and 4x fewer MACs: prunekit estimators x schedules x recovery against
Torch-Pruning's importances, on the same dense model, data and fine-tuning budget, in one run.

    python benchmarks/training_channels.py benchmarks/configs/training_channels.yaml [--quick]

Every arm ends with a physically smaller model (prunekit surgery or Torch-Pruning), measured by
``prunekit.measure.count_macs``. The global channel sparsity that meets a MAC target is found by
bisection on the number of channels removed (prunekit) or on ``pruning_ratio`` (Torch-Pruning).
Every arm gets exactly ``budget_steps`` optimizer steps of fine-tuning (one-shot: all after
pruning; iterative: split over the rounds; gradual: pruning during the first ``end_fraction``),
BatchNorm statistics are recalibrated after every surgery, and distillation arms learn from the
dense model, which is trained once and shared (read-only) by every arm.

``results.json`` and ``results.md`` are rewritten after every arm, so a stopped run keeps the
arms it finished; ``accuracy.png`` plots every arm at the end. ``workers: N`` in the config runs
N arms at a time in separate processes (each with ``threads`` threads, all reading the one cached
dense model); an arm's result does not depend on the process it ran in (each arm seeds itself),
and the rows keep the order of the grid.

Parts: ``channels_setup`` (data, dense model, recovery), ``channels_prunekit``,
``channels_tp`` (Torch-Pruning), ``channels_report`` (medians, verdicts, tables).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from channels_prunekit import prunekit_arm
from channels_report import markdown, plot, summarise, verdicts
from channels_setup import Arm, Context, accuracy, load_context, n_params
from channels_tp import torch_pruning_arm
from common import environment, parse_args, write_results
from torch import nn

from prunekit.measure import count_macs
from prunekit.train import seed_everything

RUNNERS: dict[str, Callable[[Context, Arm, float, int], nn.Module]] = {
    "prunekit": prunekit_arm,
    "torch-pruning": torch_pruning_arm,
}

Row = dict[str, Any]


def arms(config: Mapping[str, Any]) -> list[Arm]:
    """Each library's grid ``estimators x schedules x recovery`` (Torch-Pruning: one-shot)."""
    found = []
    for library, spec in config["arms"].items():
        schedules = spec.get("schedules", ["one-shot"])
        for est, sched, rec in itertools.product(spec["estimators"], schedules, spec["recovery"]):
            found.append(Arm(library, est, sched, rec))
    return found


def run_arm(ctx: Context, model: str, arm: Arm, ratio: float, seed: int) -> Row:
    """Prune and recover one arm at ``ratio`` times fewer MACs, measured on the test set."""
    start = time.perf_counter()
    seed_everything(seed)
    pruned = RUNNERS[arm.library](ctx, arm, float(ratio), seed)
    row = {
        "model": model,
        "target": ratio,
        **arm._asdict(),
        "seed": seed,
        "accuracy": accuracy(pruned, ctx.test_loader),
        "macs_ratio": ctx.dense_macs / count_macs(pruned, ctx.example).total,
        "params_ratio": n_params(ctx.dense) / n_params(pruned),
        "seconds": time.perf_counter() - start,
    }
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


Job = tuple[str, Arm, float, int]  # model name, arm, MACs ratio, seed


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    start = time.perf_counter()
    models: dict[str, Any] = {}
    for spec in config["models"]:
        name = spec["name"]
        ctx = load_context(config, spec)  # trains and caches the dense model before any worker
        dense_acc = accuracy(ctx.dense, ctx.test_loader)
        print(f"{name}: dense {dense_acc:.2f}% ({time.perf_counter() - start:.0f} s)", flush=True)
        result: dict[str, Any] = {
            "dense_accuracy": dense_acc,
            "dense_macs": ctx.dense_macs,
            "dense_params": n_params(ctx.dense),
            "runs": [],
        }
        models[name] = result
        grid = itertools.product(config["mac_targets"], arms(config), config["seeds"])
        jobs = [(name, arm, ratio, seed) for ratio, arm, seed in grid]
        for row in run_jobs(config, spec, ctx, jobs):
            result["runs"].append(row)
            _write(out, config, models, start, final=False)
    _write(out, config, models, start, final=True)


def run_jobs(
    config: Mapping[str, Any], spec: Mapping[str, Any], ctx: Context, jobs: Sequence[Job]
) -> Iterator[Row]:
    """Every job's row, in order: here, or in ``config["workers"]`` spawned processes."""
    workers = int(config.get("workers", 1))
    if workers <= 1:
        yield from (run_arm(ctx, *job) for job in jobs)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(dict(config), dict(spec)),
    ) as pool:
        yield from pool.map(_run_job, jobs)


_WORKER: dict[str, Context] = {}
"""A worker process's context (data and dense model), loaded once by :func:`_start_worker`."""


def _start_worker(config: dict[str, Any], spec: dict[str, Any]) -> None:
    torch.set_num_threads(config.get("threads", 1))
    _WORKER["ctx"] = load_context(config, spec)


def _run_job(job: Job) -> Row:
    return run_arm(_WORKER["ctx"], *job)


def _write(
    out: Path, config: Mapping[str, Any], models: Mapping[str, Any], start: float, final: bool
) -> None:
    """``results.json`` and ``results.md``; printed (with the verdicts) only when ``final``."""
    summary = [row for name, result in models.items() for row in summarise(name, result)]
    results = {
        "config": config,
        "environment": {**environment(), "torch_pruning": tp.__version__},
        "models": models,
        "summary": summary,
        "verdicts": verdicts(config, summary),
        "seconds": time.perf_counter() - start,
    }
    if final:
        write_results(out, results, markdown(results))
        plot(results, out / "accuracy.png")
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results) + "\n")


if __name__ == "__main__":
    main()
