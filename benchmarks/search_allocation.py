"""Allocation search vs fixed allocations at 4x fewer MACs on the Fashion-MNIST channel
benchmark (see configs/search_allocation.yaml), and trials/hour with 1 and 2 Ray workers.

    python benchmarks/search_allocation.py benchmarks/configs/search_allocation.yaml [--quick]
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from itertools import islice
from typing import Any

import torch
from channels_setup import Arm, Context, accuracy, load_context, train_loader, tune
from common import environment, markdown_table, parse_args, write_results
from torch import nn

import prunekit
from prunekit.analysis.allocation import allocate, allocation_overrides
from prunekit.analysis.sensitivity import sensitivity
from prunekit.budget import Target
from prunekit.config import make_config
from prunekit.errors import SelectionError
from prunekit.measure import count_macs
from prunekit.search import search
from prunekit.search.prepare import build_space, prepare
from prunekit.train import evaluate, seed_everything


def batches(ctx: Context, seed: int, count: int, skip: int = 0) -> list[Any]:
    return list(islice(iter(train_loader(ctx, seed)), skip, skip + count))


def baseline(ctx: Context, name: str, seed: int) -> tuple[nn.Module, float]:
    """Uniform (one sparsity per layer) or global (mean-normalised ranking) to the target, or
    sensitivity-driven per-layer sparsities (analysis.allocate) scaled to the target."""
    config = ctx.config
    calib = batches(ctx, seed, config["n_batches"])
    start = time.perf_counter()
    if name in ("uniform", "global"):
        scope = "layer" if name == "uniform" else "global"
        result = prunekit.prune(
            ctx.dense, ctx.example, granularity="channel", target={"macs": config["keep"]},
            scope=scope, data=calib, metrics=False,
        )  # fmt: skip
        return result.model, time.perf_counter() - start
    held = batches(ctx, seed, config["eval_batches"], skip=config["n_batches"])
    base = make_config(None, {"granularity": "channel", "sparsity": 0.0, "scope": "layer"})
    prepared = prepare(ctx.dense, ctx.example, base, None)
    space = build_space(prepared, Target("macs", config["keep"]), 0.02)

    def held_out_accuracy(model: nn.Module) -> float:
        return evaluate(model, held).accuracy

    curves = sensitivity(
        ctx.dense, prepared.groups, prepared.scores, held_out_accuracy,
        config["sensitivity_sparsities"], higher_is_better=True, progress=False,
    )  # fmt: skip
    cap = max(config["sensitivity_sparsities"])
    lo, hi = 0.0, cap
    best = space.floor_sparsities()
    for _ in range(25):  # the least total sparsity whose allocation meets the MACs target
        mid = (lo + hi) / 2
        try:
            alloc = allocate(curves, prepared.groups, mid, max_sparsity=cap)
        except SelectionError:  # more than the curves allow: go lower
            hi = mid
            continue
        sparsities = space.sparsities(
            {p: 1 - s for p, s in allocation_overrides(alloc, prepared.groups).items()}
        )
        if space.ratio(sparsities, "macs") <= config["keep"]:
            hi, best = mid, sparsities
        else:
            lo = mid
    if best == space.floor_sparsities():
        raise RuntimeError("sensitivity: no allocation of the measured curves meets the target")
    cfg = base.replace(overrides=space.project(best, fill=True))
    pruned = prunekit.prune(ctx.dense, ctx.example, config=cfg, data=calib, metrics=False).model
    return pruned, time.perf_counter() - start


def searched(ctx: Context, name: str, seed: int, workers: int = 1, trials: int | None = None
             ) -> tuple[nn.Module, float, Mapping[str, Any]]:  # fmt: skip
    config = ctx.config
    data = batches(ctx, seed, config["n_batches"] + config["eval_batches"])
    start = time.perf_counter()
    result = search(
        ctx.dense, ctx.example, data=data, target={"macs": config["keep"]}, searcher=name,
        trials=trials or config["trials"], workers=workers, storage=":memory:", seed=seed,
        n_batches=config["n_batches"], eval_batches=config["eval_batches"], progress=False,
        threads=1,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    calib = data[: config["n_batches"]]
    pruned = prunekit.prune(
        ctx.dense, ctx.example, config=result.prune_config(), data=calib, metrics=False
    ).model
    done = result.completed
    info = {"best_proxy": 100 * result.best.score, "trials": len(result.trials),
            "trial_seconds": sum(t.seconds for t in done) / max(len(done), 1)}  # fmt: skip
    return pruned, seconds, info


def measure(ctx: Context, arm: str, model: nn.Module, seconds: float, seed: int,
            info: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    macs = count_macs(model, ctx.example).total / ctx.dense_macs
    one_shot = accuracy(model, ctx.test_loader)
    tune(ctx, model, ctx.config["budget_steps"], Arm("prunekit", "magnitude", arm, "finetune"),
         seed)  # fmt: skip
    return {"arm": arm, "seed": seed, "macs": macs, "one_shot": one_shot,
            "finetuned": accuracy(model, ctx.test_loader), "seconds": seconds, **info}  # fmt: skip


def ray_rates(ctx: Context, seed: int) -> list[dict[str, Any]]:
    rows = []
    for workers in ctx.config["ray"]["workers"]:
        trials = ctx.config["ray"]["trials"]
        _, seconds, info = searched(ctx, "random", seed, workers=workers, trials=trials)
        rows.append({"workers": workers, "trials": trials, "seconds": seconds,
                     "trials_per_hour": 3600 * trials / seconds,
                     "trial_seconds": info["trial_seconds"]})  # fmt: skip
    return rows


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    spec = config["models"][0]
    ctx = load_context(config, spec)
    rows: list[dict[str, Any]] = []
    for seed in config["seeds"]:
        for name in config["baselines"]:
            seed_everything(seed)
            model, seconds = baseline(ctx, name, seed)
            rows.append(measure(ctx, name, model, seconds, seed, {}))
            print(rows[-1], flush=True)
        for name in config["searchers"]:
            seed_everything(seed)
            model, seconds, info = searched(ctx, name, seed)
            rows.append(measure(ctx, name, model, seconds, seed, info))
            print(rows[-1], flush=True)
    rates = ray_rates(ctx, config["seeds"][0])
    dense = accuracy(ctx.dense, ctx.test_loader)
    table = markdown_table(
        ["arm", "MACs kept", "one-shot acc %", f"after {config['budget_steps']} steps %",
         "best proxy %", "search s"],
        [[r["arm"], f"{r['macs']:.3f}", r["one_shot"], r["finetuned"],
          "" if "best_proxy" not in r or math.isnan(r["best_proxy"]) else r["best_proxy"],
          r["seconds"]] for r in rows],
    )  # fmt: skip
    ray_table = markdown_table(
        ["Ray workers", "trials", "wall s", "trials/hour", "s per trial (in worker)"],
        [[r["workers"], r["trials"], r["seconds"], r["trials_per_hour"], r["trial_seconds"]]
         for r in rates],
    )  # fmt: skip
    markdown = f"Dense test accuracy {dense:.2f}%.\n\n{table}\n\n{ray_table}"
    write_results(out, {"environment": environment(), "config": config, "dense": dense,
                        "rows": rows, "ray": rates}, markdown)  # fmt: skip


if __name__ == "__main__":
    main()
