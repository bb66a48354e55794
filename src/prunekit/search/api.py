"""``prunekit.search.search``: find each layer's sparsity under a MACs, params, latency or size
budget.

The model is traced and scored once (:mod:`prunekit.search.prepare`); each trial picks one keep
ratio per layer, is projected onto the budget (:class:`~prunekit.search.space.SearchSpace`),
pruned by surgery and scored (:mod:`prunekit.search.objectives`). The Optuna study is stored
(:mod:`prunekit.search.storage`), so a stopped search resumes, and trials may run on Ray
workers (:mod:`prunekit.search.runner`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.budget import RuntimeTimer, Target
from prunekit.config import PruneConfig, make_config
from prunekit.errors import ConfigError
from prunekit.estimators import ScoringData
from prunekit.search.budget import Budget, parse_budget
from prunekit.search.costs import timed_ratio
from prunekit.search.evaluate import Outcome, TrialEvaluator
from prunekit.search.objectives import ObjectiveFn, make_objective
from prunekit.search.prepare import build_space, fingerprint, prepare
from prunekit.search.result import SearchResult, records
from prunekit.search.runner import make_executor, run_trials
from prunekit.search.searchers import SpaceInfo, get_searcher
from prunekit.search.space import SearchSpace
from prunekit.search.storage import finished, open_study, requeue_interrupted

DEFAULT_DIR = Path("runs/search")
"""Where the study's journal file goes when no ``storage`` is given."""


def _batches(data: Iterable[Any] | None, count: int) -> list[Any]:
    return [] if data is None else list(islice(iter(data), count))


def _features(space: SearchSpace) -> list[list[float]]:
    """Per searched parameter: its units over the largest parameter's, and the share of the
    budget's cost it frees alone at its floor (AMC's layer embedding, reduced)."""
    by_pattern = {d.pattern: d for d in space.dims}
    units = [sum(by_pattern[q].n_units for q in p.patterns) for p in space.params]
    metric = space.target.metric
    features = []
    for param, n in zip(space.params, units, strict=True):
        alone = {q: 0.0 for q in space.names} | {
            q: by_pattern[q].sparsity(0.0) for q in param.patterns
        }
        features.append([n / max(units), 1.0 - space.ratio(alone, metric)])
    return features


def search(
    model: nn.Module,
    example_inputs: Any,
    *,
    data: Iterable[Any] | None,
    target: Budget | Target | Mapping[str, float | str] | str,
    searcher: str = "tpe",
    space: str = "group",
    stages: int | Mapping[str, str] | None = None,
    trials: int = 20,
    workers: int = 1,
    address: str | None = None,
    storage: str | Path | None = None,
    study_name: str | None = None,
    objective: str | ObjectiveFn = "proxy",
    eval_data: Iterable[Any] | None = None,
    n_batches: int = 8,
    eval_batches: int | None = None,
    finetune_steps: int = 20,
    finetune_lr: float = 1e-3,
    seed: int = 0,
    tolerance: float = 0.02,
    threads: int | None = None,
    timer: RuntimeTimer | None = None,
    confirm: bool = True,
    progress: bool = True,
    config: PruneConfig | Mapping[str, Any] | None = None,
    **options: Any,
) -> SearchResult:
    """Search per-layer sparsities of ``model`` that keep at most ``target`` of its MACs,
    params, latency or size on disk and score highest.

    Args:
        data: batches of ``(inputs, targets)``: the first ``n_batches`` score the units (as
            ``prunekit.prune(data=...)``) and recalibrate BatchNorm in every trial; without
            ``eval_data`` the next ``eval_batches`` (default ``n_batches``) are the held-out
            batches the objective is measured on.
        target: ``{"macs": 0.25}``, ``{"params": 0.5}``, ``{"size": 0.5}`` (bytes of the
            safetensors file) or ``{"latency": 0.5, "runtime": "onnxruntime" | "torch"}``: the
            per-layer latency table is measured once (with ``timer``, default one thread in
            the runtime) and prices every candidate, its projection and the recorded cost;
            with ``confirm`` the best trial's pruned model is then timed against the dense
            one (:attr:`SearchResult.measured`).
        space / stages: ``"group"`` (default): one keep ratio per prunable layer; ``"stage"``:
            one per stage, shared by its layers (fewer dimensions for deep nets). A layer's
            stage comes from ``stages``: a mapping of name globs to stage names, or an int
            depth (the first ``depth`` components of its name), or by default its parent
            module's name without trailing block indices (:mod:`prunekit.search.stages`).
        searcher: ``random``, ``tpe``, ``nsga2`` (score and cost: a Pareto front), ``cmaes``,
            ``ga`` or ``amc`` (:data:`~prunekit.search.SEARCHERS`).
        trials: finished trials wanted in the study; a resumed study runs only the rest.
        workers / address: run trials on that many Ray workers (local Ray started on demand),
            or on the Ray cluster at ``address``.
        storage: a journal file path (default ``runs/search/study-<model hash>.journal``), a
            database URL, or ``":memory:"``; ``study_name`` defaults to
            ``<searcher>-<target>-<objective>``.
        objective: ``"proxy"`` (held-out accuracy after BatchNorm recalibration), ``"finetune"``
            (after ``finetune_steps`` steps of fine-tuning first), ``"proxy-loss"`` /
            ``"finetune-loss"`` (the same, scored by minus the held-out cross-entropy) or
            ``f(model) -> float`` (higher is better; given the pruned, recalibrated model).
        tolerance: with one objective, a candidate spending less than ``(1 - tolerance)`` of
            the budget is moved toward the dense model until it spends it.
        threads: torch threads for each trial (Ray workers use 1 unless given).
        config / options: the base :class:`~prunekit.config.PruneConfig` (granularity
            ``channel`` by default, estimator, exclude, min_keep_fraction, ...); its sparsity
            and target are replaced by the searched per-layer sparsities.
    """
    goal = parse_budget(target)
    if trials < 1 or workers < 1:
        raise ConfigError(f"search: trials and workers must be >= 1, got {trials}, {workers}")
    entry = get_searcher(searcher)
    name = searcher.strip().lower()
    base = _base_config(config, options)
    held = eval_batches or n_batches
    if eval_data is not None:
        calibration, held_out = _batches(data, n_batches), _batches(eval_data, held)
    else:  # one pass: a shuffling loader would reshuffle between two
        taken = _batches(data, n_batches + held)
        calibration, held_out = taken[:n_batches], taken[n_batches:]
    scoring = ScoringData(calibration, progress=False) if calibration else None
    prepared = prepare(model, example_inputs, base, scoring)
    depth, mapping = (stages, None) if isinstance(stages, int) else (None, stages)
    searched = build_space(
        prepared, goal, tolerance, space=space, stage_depth=depth, stages=mapping, timer=timer
    )
    fn = make_objective(
        objective, calibration, held_out, steps=finetune_steps, lr=finetune_lr, seed=seed
    )
    objective_name = objective if isinstance(objective, str) else "function"
    model_hash = fingerprint(model)
    where = storage if storage is not None else DEFAULT_DIR / f"study-{model_hash[:12]}.journal"
    per = "" if space == "group" else "-stage"
    study_name = study_name or f"{name}-{goal.metric}{goal.keep:g}-{objective_name}{per}"
    meta: dict[str, Any] = {"model": model_hash, "target": str(goal), "objective": objective_name,
                            "layers": searched.names, "config": base.model_dump_json()}  # fmt: skip
    if per:  # a per-layer study keeps the meta it always had
        meta["params"] = {p.name: list(p.patterns) for p in searched.params}
    lows = [p.low for p in searched.params]
    info = SpaceInfo(searched.param_names, lows, _features(searched), trials, seed)
    study = open_study(
        where, study_name, ["maximize", "minimize"] if entry.multi_objective else ["maximize"],
        entry.build(info), meta,
    )  # fmt: skip
    requeue_interrupted(study)
    if not entry.numbered and finished(study):  # a restarted sampler must not replay its draws
        study.sampler = entry.build(
            SpaceInfo(info.names, info.lows, info.features, trials, seed + len(study.trials))
        )
    pool_threads = threads if threads is not None else (1 if workers > 1 or address else None)
    evaluator = TrialEvaluator(prepared, searched, fn, pool_threads)
    executor = make_executor(evaluator, workers, address)
    run_trials(study, searched, executor, trials, multi=entry.multi_objective, progress=progress,
               on_outcome=_reporter(progress))  # fmt: skip
    result = SearchResult(records(study), goal, name, objective_name, base, str(where), study_name)
    if (
        goal.metric == "latency"
        and confirm
        and any(t.latency <= goal.keep + 1e-9 for t in result.completed)
    ):
        chosen = searched.selection(result.best.sparsities)
        timing = timer or RuntimeTimer(goal.runtime or "onnxruntime")
        real = timed_ratio(prepared.model, prepared.example, prepared.groups, chosen, timing)
        result = dataclasses.replace(result, measured=real)
    return result


def _base_config(
    config: PruneConfig | Mapping[str, Any] | None, options: Mapping[str, Any]
) -> PruneConfig:
    given = dict(options)
    given.setdefault("granularity", "channel")
    given.update(sparsity=0.0, target=None, threshold=None, scope="layer")
    cfg = make_config(config, given, where="search()")
    if cfg.overrides:
        raise ConfigError("search() chooses every layer's sparsity; remove overrides")
    return cfg


def _reporter(progress: bool) -> Any:
    def report(outcome: Outcome) -> None:
        if progress and outcome.failed:
            from tqdm.auto import tqdm

            tqdm.write(f"search: trial {outcome.number} failed ({outcome.error})")

    return report


__all__ = ["search"]
