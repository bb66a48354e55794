"""How much can any per-layer allocation gain on the channel benchmark? An upper bound.

    python benchmarks/search_ceiling.py benchmarks/configs/search_ceiling.yaml [--quick]

Phase 1 searches the per-layer keep ratios with Optuna's TPE scored by the benchmark's *own
final metric*: each candidate is projected onto the MACs budget exactly as
``prunekit.search`` does, pruned by ``prunekit.prune``, fine-tuned for ``budget_steps`` and
measured on the test set (one seed). No real searcher may look at the test set; this one does,
on purpose, so its best is what allocation alone can buy at this budget and recovery (an
optimistic bound: the maximum of many noisy measurements). Phase 2 removes that optimism: the
``top`` allocations and uniform are pruned and fine-tuned again under the ``reseeds`` (other
calibration batches and data order), and the table reports each one's gain over uniform on
those seeds only. Rows go to ``rows.jsonl`` and the study to a journal file in the output
directory, so a stopped run resumes.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
from channels_setup import Arm, Context, accuracy, load_context, tune
from common import environment, markdown_table, parse_args, write_results
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from search_allocation import batches, per_layer_config

import prunekit
from prunekit.budget import Target
from prunekit.search.prepare import build_space, prepare
from prunekit.search.space import SearchSpace

UNIFORM = "uniform"


def finetuned_accuracy(ctx: Context, sparsities: Mapping[str, float], seed: int) -> float:
    """Test accuracy of the dense model pruned to ``sparsities`` (BatchNorm recalibrated on the
    seed's calibration batches) after the benchmark's fine-tune under ``seed``."""
    calib = batches(ctx, seed, ctx.config["n_batches"])
    torch.manual_seed(seed)
    config = per_layer_config(sparsities)
    model = prunekit.prune(ctx.dense, ctx.example, config=config, data=calib, metrics=False).model
    tune(ctx, model, ctx.config["budget_steps"], Arm("prunekit", "magnitude", "c", "ft"), seed)
    return accuracy(model, ctx.test_loader)


def search_phase(ctx: Context, space: SearchSpace, out: Path, log: Path) -> None:
    """TPE over per-layer keeps in ``[low, 1]``, scored by the fine-tuned test accuracy under
    the study's seed; uniform (every keep 1.0, projected) is the first trial."""
    study_cfg = ctx.config["ceiling"]
    seed, low = int(study_cfg["seed"]), float(study_cfg.get("low", 0.1))
    storage = JournalStorage(JournalFileBackend(str(out / "ceiling.journal")))
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(study_name="ceiling", storage=storage, direction="maximize",
                                sampler=sampler, load_if_exists=True)  # fmt: skip
    if not study.trials:
        study.enqueue_trial(dict.fromkeys(space.names, 1.0))
        for keeps in study_cfg.get("start", []):
            study.enqueue_trial(dict(zip(space.names, keeps, strict=True)))

    def objective(trial: optuna.Trial) -> float:
        keeps = {p: trial.suggest_float(p, low, 1.0) for p in space.names}
        sparsities = space.project(space.sparsities(keeps), fill=True)
        score = finetuned_accuracy(ctx, sparsities, seed)
        row = {"phase": "search", "trial": trial.number, "seed": seed, "finetuned": score,
               "macs": space.ratio(sparsities, "macs"), "sparsities": sparsities}  # fmt: skip
        _append(log, row)
        return score

    left = int(study_cfg["trials"]) - len(
        study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    )
    if left > 0:
        study.optimize(objective, n_trials=left)


def reseed_phase(ctx: Context, rows: list[dict[str, Any]], log: Path) -> list[dict[str, Any]]:
    """The ``top`` allocations of the search and uniform, fine-tuned under every reseed:
    ``rows`` with the reseed rows not yet in them added."""
    study_cfg = ctx.config["ceiling"]
    searched = sorted((r for r in rows if r["phase"] == "search"), key=lambda r: -r["finetuned"])
    uniform = next(r for r in rows if r["phase"] == "search" and r["trial"] == 0)
    chosen = [uniform, *[r for r in searched if r["trial"] != 0][: int(study_cfg["top"])]]
    done = {(r["trial"], r["seed"]) for r in rows if r["phase"] == "reseed"}
    out = list(rows)
    for pick in chosen:
        for seed in study_cfg["reseeds"]:
            if (pick["trial"], seed) in done:
                continue
            score = finetuned_accuracy(ctx, pick["sparsities"], seed)
            row = {"phase": "reseed", "trial": pick["trial"], "seed": seed, "finetuned": score}
            out.append(row)
            _append(log, row)
    return out


def table(rows: list[dict[str, Any]], reseeds: list[int], top: int) -> str:
    """Per allocation: its search-seed score, each reseed's score and its gain over uniform."""
    searched = {r["trial"]: r for r in rows if r["phase"] == "search"}
    again = {(r["trial"], r["seed"]): r["finetuned"] for r in rows if r["phase"] == "reseed"}
    order = [0, *sorted((t for t in searched if t != 0), key=lambda t: -searched[t]["finetuned"])]
    lines = []
    for t in order[: top + 1]:
        scores = [again.get((t, s)) for s in reseeds]
        gains = [a - again[(0, s)] for a, s in zip(scores, reseeds, strict=True)
                 if a is not None and (0, s) in again]  # fmt: skip
        keeps = " / ".join(f"{1 - v:.2f}" for v in searched[t]["sparsities"].values())
        lines.append([
            UNIFORM if t == 0 else f"trial {t}", keeps, f"{searched[t]['macs']:.3f}",
            searched[t]["finetuned"], " / ".join("-" if a is None else f"{a:.2f}" for a in scores),
            statistics.median(gains) if gains else float("nan"),
        ])  # fmt: skip
    header = ["allocation", "keep per layer", "MACs kept", "search-seed acc %",
              "reseeded acc % (per seed)", "median gain over uniform on reseeds (pp)"]  # fmt: skip
    return markdown_table(header, lines)


def _append(log: Path, row: dict[str, Any]) -> None:
    print(row, flush=True)
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = load_context(config, config["models"][0])
    study_cfg = config["ceiling"]
    space = build_space(prepare(ctx.dense, ctx.example, per_layer_config(), None),
                        Target("macs", float(study_cfg["keep"])), 0.02)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    log = out / "rows.jsonl"
    search_phase(ctx, space, out, log)
    rows = reseed_phase(ctx, [json.loads(x) for x in log.read_text().splitlines()], log)
    markdown = f"Layers: {', '.join(space.names)}.\n\n" + table(
        rows, list(study_cfg["reseeds"]), int(study_cfg["top"])
    )
    write_results(out, {"environment": environment(), "config": config, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
