"""``prunekit.search.search``: find each layer's sparsity under a MACs or params budget.

The model is traced and scored once (:mod:`prunekit.search.prepare`); each trial picks one keep
ratio per layer, is projected onto the budget (:class:`~prunekit.search.space.SearchSpace`),
pruned by surgery and scored (:mod:`prunekit.search.objectives`). The Optuna study is stored
(:mod:`prunekit.search.storage`), so a stopped search resumes, and trials may run on Ray
workers (:mod:`prunekit.search.runner`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.budget import Target, parse_target
from prunekit.config import PruneConfig, make_config
from prunekit.errors import ConfigError
from prunekit.estimators import ScoringData
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
    """Per layer: its units over the largest layer's, and the share of the target's cost it
    frees alone at its floor (AMC's layer embedding, reduced)."""
    largest = max(d.n_units for d in space.dims)
    metric = space.target.metric
    features = []
    for d in space.dims:
        alone = {p: 0.0 for p in space.names} | {d.pattern: d.sparsity(0.0)}
        features.append([d.n_units / largest, 1.0 - space.ratio(alone, metric)])
    return features


def search(
    model: nn.Module,
    example_inputs: Any,
    *,
    data: Iterable[Any] | None,
    target: Target | Mapping[str, float | str] | str,
    searcher: str = "tpe",
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
    progress: bool = True,
    config: PruneConfig | Mapping[str, Any] | None = None,
    **options: Any,
) -> SearchResult:
    """Search per-layer sparsities of ``model`` that keep at most ``target`` of its MACs or
    params (``{"macs": 0.25}``) and score highest.

    Args:
        data: batches of ``(inputs, targets)``: the first ``n_batches`` score the units (as
            ``prunekit.prune(data=...)``) and recalibrate BatchNorm in every trial; without
            ``eval_data`` the next ``eval_batches`` (default ``n_batches``) are the held-out
            batches the objective is measured on.
        searcher: ``random``, ``tpe``, ``nsga2`` (score and cost: a Pareto front), ``cmaes``,
            ``ga`` or ``amc`` (:data:`~prunekit.search.SEARCHERS`).
        trials: finished trials wanted in the study; a resumed study runs only the rest.
        workers / address: run trials on that many Ray workers (local Ray started on demand),
            or on the Ray cluster at ``address``.
        storage: a journal file path (default ``runs/search/study-<model hash>.journal``), a
            database URL, or ``":memory:"``; ``study_name`` defaults to
            ``<searcher>-<target>-<objective>``.
        objective: ``"proxy"`` (held-out accuracy after BatchNorm recalibration), ``"finetune"``
            (after ``finetune_steps`` steps of fine-tuning first) or ``f(model) -> float``
            (higher is better; given the pruned, recalibrated model).
        tolerance: with one objective, a candidate spending less than ``(1 - tolerance)`` of
            the budget is moved toward the dense model until it spends it.
        threads: torch threads for each trial (Ray workers use 1 unless given).
        config / options: the base :class:`~prunekit.config.PruneConfig` (granularity
            ``channel`` by default, estimator, exclude, min_keep_fraction, ...); its sparsity
            and target are replaced by the searched per-layer sparsities.
    """
    goal = parse_target(target)
    if goal.metric not in ("macs", "params"):
        raise ConfigError(
            f"search: the budget must be a MACs or params target, got {goal.metric}; prune to a "
            "latency target with prunekit.prune(..., target={'latency': ...})"
        )
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
    space = build_space(prepared, goal, tolerance)
    fn = make_objective(objective, calibration, held_out, steps=finetune_steps, lr=finetune_lr)
    objective_name = objective if isinstance(objective, str) else "function"
    model_hash = fingerprint(model)
    where = storage if storage is not None else DEFAULT_DIR / f"study-{model_hash[:12]}.journal"
    study_name = study_name or f"{name}-{goal.metric}{goal.keep:g}-{objective_name}"
    meta = {"model": model_hash, "target": str(goal), "objective": objective_name,
            "layers": space.names, "config": base.model_dump_json()}  # fmt: skip
    info = SpaceInfo(space.names, [d.low for d in space.dims], _features(space), trials, seed)
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
    evaluator = TrialEvaluator(prepared, space, fn, pool_threads)
    executor = make_executor(evaluator, workers, address)
    run_trials(study, space, executor, trials, multi=entry.multi_objective, progress=progress,
               on_outcome=_reporter(progress))  # fmt: skip
    return SearchResult(records(study), goal, name, objective_name, base, str(where), study_name)


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
