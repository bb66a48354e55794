"""Which channel *selection* should be prunekit's default: selection strategies compared at equal
MACs and an equal fine-tuning budget, on several architectures, with Torch-Pruning's per-layer
uniform pruning as the peer reference.

    python benchmarks/selection_defaults.py benchmarks/configs/selection_defaults.yaml [--quick]

A strategy is a config entry with a ``kind``:

- ``global``: every unit of every group ranked on one scale (``normalize``: the per-group score
  normalisation applied first, ``none`` = raw scores), the lowest removed;
- ``layer``: the same sparsity removed from every group (per-layer uniform);
- ``sensitivity``: per-group sparsities from one-layer-at-a-time sensitivity curves
  (:func:`prunekit.analysis.sensitivity` measured on held-out *training* images, then
  :func:`prunekit.analysis.allocate`, Han et al. 2015 / Distiller);
- ``torch-pruning``: ``tp.pruner.MetaPruner`` with ``global_pruning: false`` (per-layer uniform).

Every arm reaches its MACs target the same way: bisection on the strategy's one knob (global
sparsity, per-layer sparsity, allocated unit sparsity, Torch-Pruning ``pruning_ratio``) for the
smallest value whose physically pruned model has at most ``dense MACs / target`` MACs
(``prunekit.measure.count_macs``). Every group keeps at least ``min_keep_fraction`` of its units
(the ``SelectionConfig`` field when prunekit has it, otherwise the same rule applied here: the
top-scored ``ceil(fraction * units)`` of each group rank above every other unit). Then BatchNorm
statistics are recalibrated, the one-shot test accuracy is measured, and every arm gets exactly
``budget_steps`` Adam steps of fine-tuning (``channels_setup.tune``).

Rows are written to ``results.json`` / ``results.md`` as they finish (a stopped run keeps them).
Jobs run seed by seed, so a partial run has every arm of the first seeds. ``workers: N`` runs N
arms at a time in spawned processes that each load every dense model once.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torch_pruning as tp
from channels_setup import (
    Arm,
    Context,
    accuracy,
    load_context,
    n_params,
    recalibrate,
    recalibration_batches,
    tune,
)
from channels_setup import scoring_data as scoring_batches
from common import environment, parse_args, write_results
from selection_report import markdown, summarise
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.analysis.allocation import allocate
from prunekit.analysis.sensitivity import SensitivityResult, sensitivity
from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.scores import normalize_scores
from prunekit.core.selection import SelectionConfig, keep_top, select
from prunekit.errors import SelectionError
from prunekit.estimators import get_estimator
from prunekit.graph import build_structural_groups
from prunekit.measure import count_macs
from prunekit.surgery import apply_surgery
from prunekit.train import evaluate, seed_everything

Row = dict[str, Any]
Knob = Callable[[float], Selection]  # the strategy's one knob -> a selection


class Job(NamedTuple):
    model: str
    target: float
    strategy: str
    estimator: str
    seed: int


def library_floor() -> bool:
    """Whether this prunekit's ``SelectionConfig`` has the per-group floor field."""
    return "min_keep_fraction" in {f.name for f in dataclasses.fields(SelectionConfig)}


def floor_config(fraction: float, **kwargs: Any) -> SelectionConfig:
    """A ``SelectionConfig`` with the library's floor when there is one (else without)."""
    if library_floor():
        kwargs["min_keep_fraction"] = fraction
    return SelectionConfig(**kwargs)


def floored(scores: Scores, groups: Sequence[Group], fraction: float) -> Scores:
    """Scores in which each group's top ``ceil(fraction * units)`` rank above every other unit,
    so that a global selection never takes a group below that floor."""
    top = max(float(s.max()) for s in scores.values()) + 1.0
    out: Scores = {}
    for group in groups:
        s = scores[group.name].float().clone()
        keep = math.ceil(fraction * group.n_units)
        s[torch.sort(s, descending=True, stable=True).indices[:keep]] += top - float(s.min())
        out[group.name] = s
    return out


def global_knob(scores: Scores, groups: Sequence[Group], spec: Mapping[str, Any]) -> Knob:
    """Global selection over (normalised) scores with the floor, as a function of sparsity."""
    fraction, how = float(spec["floor"]), spec.get("normalize", "none")
    if library_floor():
        return lambda s: select(
            scores, groups, floor_config(fraction, sparsity=s, normalize=how, scope="global")
        )
    ranked = floored(normalize_scores(dict(scores), how), groups, fraction)
    return lambda s: select(ranked, groups, SelectionConfig(sparsity=s, scope="global"))


def layer_knob(scores: Scores, groups: Sequence[Group], spec: Mapping[str, Any]) -> Knob:
    """One sparsity for every group (at most ``1 - floor``)."""
    cap = 1.0 - float(spec["floor"])
    return lambda s: select(scores, groups, SelectionConfig(sparsity=min(s, cap), scope="layer"))


_CURVES: dict[tuple[str, str, int], SensitivityResult] = {}
"""This process's sensitivity curves by (model, estimator, seed): both MAC targets share them."""


def curves(ctx: Context, job: Job, groups: Sequence[Group], scores: Scores) -> SensitivityResult:
    """Sensitivity of the dense model, each group alone pruned by ``scores`` (memoised), with
    BatchNorm re-estimated before every point on the batches every arm recalibrates on."""
    key = (job.model, job.estimator, job.seed)
    if key not in _CURVES:
        _CURVES[key] = sensitivity(
            ctx.dense,
            groups,
            scores,
            HeldOut(ctx, int(ctx.config["sensitivity_images"])),
            ctx.config.get("sensitivity_sparsities", (0.1, 0.3, 0.5, 0.7, 0.9)),
            higher_is_better=True,
            progress=False,
            recalibrate=recalibration_batches(ctx, job.seed),
        )
    return _CURVES[key]


def sensitivity_knob(
    scores: Scores, groups: Sequence[Group], spec: Mapping[str, Any], result: SensitivityResult
) -> Knob:
    """:func:`allocate` from the sensitivity curves at each unit sparsity (never above
    ``1 - floor`` in a group)."""
    cap = 1.0 - float(spec["floor"])

    def knob(s: float) -> Selection:
        alloc = allocate(result, groups, s, max_sparsity=cap)
        return {
            g.name: keep_top(scores[g.name], round(alloc[g.name] * g.n_units), SelectionConfig())
            for g in groups
        }

    return knob


class HeldOut:
    """``eval_fn`` for sensitivity: accuracy of a model on held-out training images (the last
    ``n`` of the training set; the test set is never looked at before the final measurement)."""

    def __init__(self, ctx: Context, n: int) -> None:
        images, labels = (t[-n:] for t in ctx.train_set.tensors)
        self.loader = DataLoader(TensorDataset(images, labels), batch_size=500)

    def __call__(self, model: nn.Module) -> float:
        return evaluate(model, self.loader).accuracy


def bisect(
    ctx: Context, ratio: float, knob: Callable[[float], nn.Module | None], hi: float
) -> nn.Module:
    """The pruned model of the smallest knob value in ``[0, hi]`` with at most ``1 / ratio`` of
    the dense MACs (MACs fall as the knob grows; ``None``: the knob's model cannot be built)."""
    target, steps = ctx.dense_macs / ratio, int(ctx.config["bisection_steps"])
    lo, best = 0.0, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        pruned = knob(mid)
        if pruned is not None and count_macs(pruned, ctx.example).total <= target:
            hi, best = mid, pruned
        else:
            lo = mid
    if best is None:
        raise RuntimeError(f"cannot reach {ratio}x fewer MACs below knob {hi}")
    return best


def prunekit_prune(ctx: Context, job: Job, spec: Mapping[str, Any]) -> nn.Module:
    """Score the dense model, build the strategy's knob, bisect it to the MACs target."""
    groups = build_structural_groups(ctx.dense, ctx.example)
    raw = get_estimator(job.estimator).score(ctx.dense, groups, scoring_batches(ctx, job.seed))
    scores = {g.name: raw[g.name].float() for g in groups}
    kind = spec["kind"]
    if kind == "global":
        select_at = global_knob(scores, groups, spec)
    elif kind == "layer":
        select_at = layer_knob(scores, groups, spec)
    else:
        select_at = sensitivity_knob(scores, groups, spec, curves(ctx, job, groups, scores))

    def build(s: float) -> nn.Module | None:
        try:
            selection = select_at(s)
        except SelectionError:
            return None
        return apply_surgery(ctx.dense, groups, selection)[0]

    return bisect(ctx, job.target, build, 1.0 - float(spec["floor"]))


TP_IMPORTANCES: dict[str, Callable[[], Any]] = {
    "magnitude": tp.importance.MagnitudeImportance,
    "taylor": tp.importance.TaylorImportance,
}


def torch_pruning_prune(ctx: Context, job: Job, spec: Mapping[str, Any]) -> nn.Module:
    """``tp.pruner.MetaPruner`` (per-layer unless ``global_pruning``), ratio bisected."""
    scored = copy.deepcopy(ctx.dense).eval()
    if job.estimator == "taylor":
        for inputs, targets in scoring_batches(ctx, job.seed).batches:
            F.cross_entropy(scored(inputs), targets).backward()

    def build(ratio: float) -> nn.Module:
        pruned = copy.deepcopy(scored)
        for source, param in zip(scored.parameters(), pruned.parameters(), strict=True):
            param.grad = None if source.grad is None else source.grad.clone()
        classifier = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1:]
        tp.pruner.MetaPruner(
            pruned,
            ctx.example,
            importance=TP_IMPORTANCES[job.estimator](),
            global_pruning=bool(spec.get("global_pruning", False)),
            pruning_ratio=ratio,
            ignored_layers=classifier,
        ).step()
        pruned.zero_grad(set_to_none=True)
        return pruned

    return bisect(ctx, job.target, build, 1.0 - float(spec["floor"]))


def widths(model: nn.Module) -> list[int]:
    """Output channels / features of every conv and linear layer, in order."""
    return [m.weight.shape[0] for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def run_job(contexts: Mapping[str, Context], job: Job) -> Row:
    """Prune one arm to its MACs target, recalibrate BN, measure, fine-tune, measure."""
    start = time.perf_counter()
    ctx = contexts[job.model]
    spec = ctx.config["strategies"][job.strategy]
    seed_everything(job.seed)
    prune = torch_pruning_prune if spec["kind"] == "torch-pruning" else prunekit_prune
    pruned = prune(ctx, job, spec)
    pruning_seconds = time.perf_counter() - start
    recalibrate(ctx, pruned, job.seed)
    oneshot = accuracy(pruned, ctx.test_loader)
    tune(ctx, pruned, ctx.config["budget_steps"], Arm("", job.estimator, "", "finetune"), job.seed)
    row = {
        **job._asdict(),
        "floor": float(spec["floor"]),
        "floor_from": "library" if library_floor() else "benchmark",
        "oneshot_accuracy": oneshot,
        "accuracy": accuracy(pruned, ctx.test_loader),
        "macs_ratio": ctx.dense_macs / count_macs(pruned, ctx.example).total,
        "params_ratio": n_params(ctx.dense) / n_params(pruned),
        "widths": widths(pruned),
        "pruning_seconds": pruning_seconds,
        "seconds": time.perf_counter() - start,
    }
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def jobs(config: Mapping[str, Any]) -> list[Job]:
    """Seed by seed (a partial run has every arm of its first seeds), then model, target, arm."""
    found = []
    for seed, spec, target in itertools.product(
        config["seeds"], config["models"], config["mac_targets"]
    ):
        for name, strategy in config["strategies"].items():
            for est in strategy.get("estimators", config["estimators"]):
                found.append(Job(spec["name"], float(target), name, est, seed))
    return found


def model_config(config: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The config one model's arms see: its dataset, and every strategy with its floor."""
    floor = config.get("min_keep_fraction", 0.1)
    strategies = {n: {"floor": floor, **s} for n, s in config["strategies"].items()}
    return {**config, "dataset": spec.get("dataset", config["dataset"]), "strategies": strategies}


def load_contexts(config: Mapping[str, Any]) -> dict[str, Context]:
    """Every model's data and (cached) dense model, keyed by the model's name."""
    return {s["name"]: load_context(model_config(config, s), s) for s in config["models"]}


_WORKER: dict[str, dict[str, Context]] = {}


def _start_worker(config: dict[str, Any]) -> None:
    torch.set_num_threads(config.get("threads", 1))
    _WORKER["contexts"] = load_contexts(config)


def _run(job: Job) -> Row:
    return run_job(_WORKER["contexts"], job)


def run_jobs(config: Mapping[str, Any], todo: Sequence[Job]) -> Iterator[Row]:
    """Every job's row as it finishes: here, or in ``workers`` spawned processes."""
    workers = int(config.get("workers", 1))
    if workers <= 1:
        contexts = load_contexts(config)
        yield from (run_job(contexts, job) for job in todo)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(dict(config),),
    ) as pool:
        yield from (f.result() for f in as_completed([pool.submit(_run, j) for j in todo]))


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    start = time.perf_counter()
    contexts = load_contexts(config)  # trains and caches every dense model before the workers
    models = {
        name: {
            "dataset": ctx.config["dataset"],
            "dense_accuracy": accuracy(ctx.dense, ctx.test_loader),
            "dense_macs": ctx.dense_macs,
            "dense_params": n_params(ctx.dense),
        }
        for name, ctx in contexts.items()
    }
    print(models, flush=True)
    runs: list[Row] = []
    results: dict[str, Any] = {}
    for row in run_jobs(config, jobs(config)):
        runs.append(row)
        results = _results(config, models, runs, start)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        (out / "results.md").write_text(markdown(results) + "\n")
    write_results(out, _results(config, models, runs, start), markdown(results))


def _results(
    config: Mapping[str, Any], models: Mapping[str, Any], runs: Sequence[Row], start: float
) -> dict[str, Any]:
    return {
        "config": config,
        "environment": {**environment(), "torch_pruning": tp.__version__},
        "floor_from": "library" if library_floor() else "benchmark",
        "models": models,
        "runs": list(runs),
        "summary": summarise(runs),
        "seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    main()
