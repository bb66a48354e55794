"""Per-layer allocation search against fixed allocations and Torch-Pruning, after equal
fine-tuning, over seeds and MAC targets (see configs/search_allocation*.yaml).

    python benchmarks/search_allocation.py benchmarks/configs/search_allocation.yaml [--quick]

A config with ``mode: correlation`` instead measures how well each trial objective ranks
random allocations by their accuracy after the benchmark's fine-tune (Spearman's rho), and
``mode: report`` only tabulates the rows already in the output directory's ``rows.jsonl``.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from channels_setup import Arm, Context, accuracy, load_context, recalibrate, train_loader, tune
from channels_tp import TP_IMPORTANCES
from common import environment, markdown_table, parse_args, write_results
from scipy.stats import spearmanr
from torch import nn

import prunekit
from prunekit.analysis.allocation import allocate, allocation_overrides
from prunekit.analysis.sensitivity import sensitivity
from prunekit.budget import Target
from prunekit.config import PruneConfig, make_config
from prunekit.errors import SelectionError
from prunekit.measure import count_macs
from prunekit.search import SearchResult, make_objective, search
from prunekit.search.prepare import build_space, prepare
from prunekit.train import evaluate, seed_everything

Spec = Mapping[str, Any]
Built = tuple[nn.Module, dict[str, Any]]
"""A pruned (BatchNorm-recalibrated, not yet fine-tuned) model and what its arm measured."""


def batches(ctx: Context, seed: int, count: int, skip: int = 0) -> list[Any]:
    return list(islice(iter(train_loader(ctx, seed)), skip, skip + count))


def per_layer_config(sparsities: Mapping[str, float] | None = None) -> PruneConfig:
    """Channel pruning with one sparsity per layer: ``sparsities`` as per-layer overrides (what
    ``SearchResult.prune_config`` replays), or none (the base every search arm shares)."""
    base = make_config(None, {"granularity": "channel", "sparsity": 0.0, "scope": "layer"})
    return base.replace(overrides=dict(sparsities)) if sparsities else base


def fixed(ctx: Context, spec: Spec, keep: float, seed: int) -> Built:
    """prunekit's uniform (``scope: layer``) or global (``scope: global``) allocation."""
    calib = batches(ctx, seed, ctx.config["n_batches"])
    result = prunekit.prune(
        ctx.dense, ctx.example, granularity="channel", target={"macs": keep},
        scope=spec["scope"], data=calib, metrics=False,
    )  # fmt: skip
    return result.model, {}


def sensitivity_arm(ctx: Context, spec: Spec, keep: float, seed: int) -> Built:
    """Sensitivity curves per layer (``analysis.sensitivity``, BatchNorm re-estimated on the
    calibration batches in every trial as ``prunekit.prune`` does; ``recalibrate: false``
    measures with the dense statistics), then ``analysis.allocate`` scaled by bisection to the
    least total sparsity whose allocation meets the MACs target. The row records the allocation
    and allocate's warning, if any."""
    config = ctx.config
    calib = batches(ctx, seed, config["n_batches"])
    held = batches(ctx, seed, config["eval_batches"], skip=config["n_batches"])
    base = per_layer_config()
    prepared = prepare(ctx.dense, ctx.example, base, None)
    space = build_space(prepared, Target("macs", keep), 0.02)

    def held_out_accuracy(model: nn.Module) -> float:
        return evaluate(model, held).accuracy

    levels = config["sensitivity_sparsities"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the stale-statistics arm is on purpose
        curves = sensitivity(
            ctx.dense, prepared.groups, prepared.scores, held_out_accuracy, levels,
            higher_is_better=True, progress=False,
            recalibrate=calib if spec.get("recalibrate", True) else None,
        )  # fmt: skip

    def allocation(total: float) -> dict[str, float]:
        return allocate(curves, prepared.groups, total, max_sparsity=max(levels))

    lo, hi, best, total = 0.0, max(levels), None, 0.0
    for _ in range(25):
        mid = (lo + hi) / 2
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # recorded below for the chosen one
                alloc = allocation(mid)
        except SelectionError:  # more than the curves allow: go lower
            hi = mid
            continue
        keeps = {p: 1 - s for p, s in allocation_overrides(alloc, prepared.groups).items()}
        sparsities = space.sparsities(keeps)
        if space.ratio(sparsities, "macs") <= keep:
            hi, best, total = mid, sparsities, mid
        else:
            lo = mid
    if best is None:
        raise RuntimeError("sensitivity: no allocation of the measured curves meets the target")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        allocation(total)
    overrides = space.project(best, fill=True)
    cfg = per_layer_config(overrides)
    pruned = prunekit.prune(ctx.dense, ctx.example, config=cfg, data=calib, metrics=False).model
    return pruned, {
        "allocation": {k: round(v, 4) for k, v in overrides.items()},
        "curves": curves.to_dict(),
        "warning": str(caught[0].message) if caught else None,
    }


def torch_pruning(ctx: Context, spec: Spec, keep: float, seed: int) -> Built:
    """``tp.pruner.MetaPruner`` with global pruning (``isomorphic``: ranked only within groups
    of the same structure, Fang et al. 2024), ``pruning_ratio`` bisected to the MAC target;
    the classifier is kept, as in prunekit's arms."""
    importance = TP_IMPORTANCES[spec.get("importance", "magnitude")]

    def pruned_at(ratio: float) -> nn.Module:
        model = copy.deepcopy(ctx.dense)
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
        tp.pruner.MetaPruner(
            model, ctx.example, importance=importance(), global_pruning=True,
            pruning_ratio=ratio, ignored_layers=classifier,
            isomorphic=bool(spec.get("isomorphic", False)),
        ).step()  # fmt: skip
        return model

    lo, hi, best = 0.0, 1.0, None
    for _ in range(ctx.config.get("tp_bisection_steps", 12)):
        mid = (lo + hi) / 2
        candidate = pruned_at(mid)
        if count_macs(candidate, ctx.example).total <= keep * ctx.dense_macs:
            hi, best = mid, candidate
        else:
            lo = mid
    if best is None:
        raise RuntimeError(f"Torch-Pruning cannot keep {keep} of the MACs")
    recalibrate(ctx, best, seed)
    return best.eval(), {"tp_ratio": hi}


def run_search(ctx: Context, spec: Spec, keep: float, seed: int, trials: int | None = None,
               workers: int = 1) -> tuple[SearchResult, list[Any]]:  # fmt: skip
    config = ctx.config
    n_batches = spec.get("n_batches", config["n_batches"])
    data = batches(ctx, seed, n_batches + config["eval_batches"])
    result = search(
        ctx.dense, ctx.example, data=data, target={"macs": keep}, searcher=spec["searcher"],
        trials=trials or spec.get("trials", config["trials"]), workers=workers,
        storage=":memory:", seed=seed, objective=spec.get("objective", "proxy"),
        finetune_steps=spec.get("finetune_steps", 20), n_batches=n_batches,
        eval_batches=config["eval_batches"], progress=False, threads=1,
    )  # fmt: skip
    return result, data[:n_batches]


def searched(ctx: Context, spec: Spec, keep: float, seed: int) -> Built:
    """The best allocation of one searcher, replayed by ``prunekit.prune``."""
    result, calib = run_search(ctx, spec, keep, seed)
    pruned = prunekit.prune(
        ctx.dense, ctx.example, config=result.prune_config(), data=calib, metrics=False
    ).model
    done = result.completed
    return pruned, {"best_objective": result.best.score, "trials": len(result.trials),
                    "trial_seconds": sum(t.seconds for t in done) / max(len(done), 1)}  # fmt: skip


ARMS: dict[str, Callable[[Context, Spec, float, int], Built]] = {
    "prunekit": fixed,
    "sensitivity": sensitivity_arm,
    "torch-pruning": torch_pruning,
    "search": searched,
}
"""Arm kinds of the config's ``arms:`` list."""


def run_arm(ctx: Context, spec: Spec, keep: float, seed: int) -> dict[str, Any]:
    """Build the arm's pruned model (timed: wall and CPU), then the common fine-tune."""
    seed_everything(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    model, info = ARMS[spec["kind"]](ctx, spec, keep, seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    macs = count_macs(model, ctx.example).total / ctx.dense_macs
    one_shot = accuracy(model, ctx.test_loader)
    steps = ctx.config["budget_steps"]
    tune(ctx, model, steps, Arm("prunekit", "magnitude", spec["name"], "finetune"), seed)
    return {"arm": spec["name"], "keep": keep, "seed": seed, "macs": macs, "one_shot": one_shot,
            "finetuned": accuracy(model, ctx.test_loader), "seconds": wall,
            "cpu_minutes": cpu / 60, **info}  # fmt: skip


def summary(rows: list[dict[str, Any]], arms: list[str], keep: float) -> str:
    """Median over seeds and per-seed values of each arm at one target."""
    table = []
    for arm in arms:
        mine = sorted((r for r in rows if r["arm"] == arm and r["keep"] == keep),
                      key=lambda r: r["seed"])  # fmt: skip
        if not mine:
            continue
        tuned = [r["finetuned"] for r in mine]
        table.append([
            arm, f"{statistics.median(r['macs'] for r in mine):.3f}",
            statistics.median(r["one_shot"] for r in mine), statistics.median(tuned),
            " / ".join(f"{v:.2f}" for v in tuned),
            statistics.median(r["cpu_minutes"] for r in mine),
        ])  # fmt: skip
    header = ["arm", "MACs kept", "one-shot acc % (median)", "fine-tuned acc % (median)",
              "fine-tuned per seed", "search CPU-min"]  # fmt: skip
    return markdown_table(header, table)


def benchmark(ctx: Context, out: Path, run: bool = True) -> dict[str, Any]:
    """Every arm at every target and seed (rows already in ``out/rows.jsonl`` are kept, so a
    stopped run resumes, and runs split by arm or seed merge by concatenating their rows);
    ``run=False`` only tabulates the rows there."""
    config = ctx.config
    partial = out / "rows.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in partial.read_text().splitlines()] if partial.exists() else []
    rows = list(done)
    for keep in config["keeps"] if run else []:
        for seed in config["seeds"]:
            for spec in config["arms"]:
                if any(r["arm"] == spec["name"] and r["keep"] == keep and r["seed"] == seed
                       for r in done):  # fmt: skip
                    continue  # a stopped run resumes
                rows.append(run_arm(ctx, spec, keep, seed))
                print(rows[-1], flush=True)
                with partial.open("a") as f:
                    f.write(json.dumps(rows[-1]) + "\n")
    names = [s["name"] for s in config["arms"]]
    tables = [f"### {1 / k:g}x fewer MACs (keep {k})\n\n{summary(rows, names, k)}"
              for k in config["keeps"]]  # fmt: skip
    return {"rows": rows, "markdown": "\n\n".join(tables)}


def correlation(ctx: Context, out: Path) -> dict[str, Any]:
    """Allocations scored again by every objective of ``correlation.objectives`` and fine-tuned
    for ``budget_steps`` steps: Spearman's rho of each objective against the fine-tuned test
    accuracy. The allocations are those of a ``random`` search scored by the proxy, or, with
    ``correlation.rows``, the search trials of a ``search_ceiling.py`` run (whose fine-tuned
    accuracies under the same seed are reused). An objective with ``batches: N`` trains on
    ``N`` distinct training batches (after the held-out ones) instead of the calibration ones."""
    config, study = ctx.config, ctx.config["correlation"]
    seed, keep = study.get("seed", 0), study["keep"]
    calib = batches(ctx, seed, config["n_batches"])
    held = batches(ctx, seed, config["eval_batches"], skip=config["n_batches"])
    rows = []
    for number, sparsities, finetuned in allocations(ctx, study, seed, keep):
        model = prunekit.prune(
            ctx.dense, ctx.example, config=per_layer_config(sparsities), data=calib, metrics=False
        ).model
        row: dict[str, Any] = {"trial": number}
        for obj in study["objectives"]:
            skip = config["n_batches"] + config["eval_batches"]
            train = batches(ctx, seed, obj["batches"], skip=skip) if "batches" in obj else calib
            fn = make_objective(obj["name"], train, held, steps=obj.get("steps", 20))
            torch.manual_seed(seed)
            start = time.process_time()
            row[obj["label"]] = fn(copy.deepcopy(model))
            row[obj["label"] + " s"] = time.process_time() - start
        row["one_shot"] = accuracy(model, ctx.test_loader)
        if finetuned is None:
            tune(ctx, model, config["budget_steps"], Arm("prunekit", "magnitude", "c", "ft"), seed)
            finetuned = accuracy(model, ctx.test_loader)
        row["finetuned"] = finetuned
        rows.append(row)
        print(row, flush=True)
    final = [r["finetuned"] for r in rows]
    best = sorted(rows, key=lambda r: -r["finetuned"])[: max(len(rows) // 4, 2)]
    labels = [o["label"] for o in study["objectives"]] + ["one_shot"]
    table = [
        [label, float(spearmanr([r[label] for r in rows], final)[0]),
         float(spearmanr([r[label] for r in best], [r["finetuned"] for r in best])[0]),
         statistics.mean(r.get(label + " s", 0.0) for r in rows)]
        for label in labels
    ]  # fmt: skip
    markdown = markdown_table(
        ["trial objective", "Spearman rho vs fine-tuned test acc",
         f"rho among the best {len(best)}", "CPU s per trial"], table,
    )  # fmt: skip
    return {"rows": rows, "markdown": f"{len(rows)} allocations at keep {keep}.\n\n" + markdown}


def allocations(
    ctx: Context, study: Spec, seed: int, keep: float
) -> list[tuple[int, dict[str, float], float | None]]:
    """(number, per-layer sparsities, fine-tuned accuracy if already measured) of the
    allocations a correlation study scores."""
    if "rows" in study:
        found = [json.loads(x) for x in Path(study["rows"]).read_text().splitlines()]
        return [(r["trial"], r["sparsities"], r["finetuned"]) for r in found
                if r["phase"] == "search" and r["seed"] == seed]  # fmt: skip
    spec = {"searcher": "random", "objective": "proxy"}
    result, _ = run_search(ctx, spec, keep, seed, trials=study["allocations"])
    return [(t.number, t.sparsities, None) for t in result.completed]


MODES: dict[str, Callable[[Context, Path], dict[str, Any]]] = {
    "benchmark": benchmark,
    "correlation": correlation,
    "report": lambda ctx, out: benchmark(ctx, out, run=False),
}


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    ctx = load_context(config, config["models"][0])
    results = MODES[config.get("mode", "benchmark")](ctx, out)
    dense = accuracy(ctx.dense, ctx.test_loader)
    markdown = f"Dense test accuracy {dense:.2f}%.\n\n{results.pop('markdown')}"
    write_results(out, {"environment": environment(), "config": config, "dense": dense,
                        **results}, markdown)  # fmt: skip


if __name__ == "__main__":
    main()
