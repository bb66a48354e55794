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
import hashlib
import json
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import optuna
from torch import nn

from prunekit.budget import RuntimeTimer, Target
from prunekit.config import PruneConfig, make_config
from prunekit.errors import ConfigError
from prunekit.estimators import ScoringData
from prunekit.search.budget import Budget, parse_budget
from prunekit.search.config import SearchConfig, make_search_config, route_options
from prunekit.search.costs import timed_ratio
from prunekit.search.evaluate import Outcome, TrialEvaluator
from prunekit.search.objectives import ObjectiveFn, make_objective
from prunekit.search.prepare import Prepared, build_space, fingerprint, prepare
from prunekit.search.result import SearchResult, records
from prunekit.search.runner import make_executor, run_trials
from prunekit.search.searchers import Searcher, SpaceInfo, get_searcher
from prunekit.search.space import SearchSpace
from prunekit.search.storage import UNIFORM, finished, open_study, requeue_interrupted

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
    config: SearchConfig | Mapping[str, Any] | None = None,
    prune: PruneConfig | Mapping[str, Any] | None = None,
    objective: str | ObjectiveFn | None = None,
    eval_data: Iterable[Any] | None = None,
    timer: RuntimeTimer | None = None,
    progress: bool = True,
    **options: Any,
) -> SearchResult:
    """Search per-layer sparsities of ``model`` that keep at most ``target`` of its MACs,
    params, latency or size on disk and score highest.

    ``search(model, x, data=loader, target={"macs": 0.25}, searcher="tpe", trials=40)``: every
    keyword option is a field of :class:`~prunekit.search.config.SearchConfig` (how to search)
    or of the base :class:`~prunekit.config.PruneConfig` (what a unit is and how it is scored),
    routed by name; ``config`` and ``prune`` give either as a whole (the options win).

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
        config: the search options (searcher, space, stages, trials, workers, address,
            storage, study_name, objective, n_batches, eval_batches, finetune_steps,
            finetune_lr, seed, tolerance, threads, confirm; see
            :class:`~prunekit.search.config.SearchConfig`).
        prune: the base pruning config (granularity ``channel`` by default, estimator,
            exclude, min_keep_fraction, ...); its sparsity and target are replaced by the
            searched per-layer sparsities.
        objective: a name (as the ``objective`` option: ``"proxy"``, ``"finetune"``,
            ``"proxy-loss"``, ``"finetune-loss"``) or ``f(model) -> float`` (higher is better;
            given the pruned, recalibrated model).
        timer: times the latency table and the confirmation (default: one thread in the
            budget's runtime).
    """
    settings, base, fn = _configs(config, prune, objective, options)
    goal = parse_budget(target)
    calibration, held_out = _split_data(data, eval_data, settings)
    scoring = ScoringData(calibration, progress=False) if calibration else None
    prepared = prepare(model, example_inputs, base, scoring)
    searched = build_space(prepared, goal, settings.tolerance, space=settings.space,
                           stages=settings.stages, timer=timer)  # fmt: skip
    trial_fn = make_objective(
        fn or settings.objective, calibration, held_out, steps=settings.finetune_steps,
        lr=settings.finetune_lr, seed=settings.seed,
    )  # fmt: skip
    objective_name = settings.objective if fn is None else "function"
    model_hash = fingerprint(model)
    settings = _named(settings, goal, objective_name, model_hash)
    entry = get_searcher(settings.searcher)
    study = _open_study(settings, entry, searched, goal, objective_name, base, model_hash)
    evaluator = TrialEvaluator(prepared, searched, trial_fn, _trial_threads(settings))
    executor = make_executor(evaluator, settings.workers, settings.address)
    run_trials(study, searched, executor, settings.trials, multi=entry.multi_objective,
               progress=progress, on_outcome=_reporter(progress))  # fmt: skip
    result = SearchResult(records(study), goal, settings, base, objective_name)
    return _confirmed(result, prepared, searched, timer)


def _configs(
    config: SearchConfig | Mapping[str, Any] | None,
    prune: PruneConfig | Mapping[str, Any] | None,
    objective: str | ObjectiveFn | None,
    options: Mapping[str, Any],
) -> tuple[SearchConfig, PruneConfig, ObjectiveFn | None]:
    """The search options, the base pruning config and a callable objective, from
    ``search()``'s arguments (keyword options routed by name)."""
    searched, pruned = route_options(options)
    fn = objective if callable(objective) else None
    if objective is not None and fn is None:
        searched["objective"] = objective
    return make_search_config(config, searched), _base_config(prune, pruned), fn


def _split_data(
    data: Iterable[Any] | None, eval_data: Iterable[Any] | None, settings: SearchConfig
) -> tuple[list[Any], list[Any]]:
    """Calibration and held-out batches: the first ``n_batches`` of ``data`` and the next
    ``held_batches`` of it (one pass: a shuffling loader would reshuffle between two), or of
    ``eval_data``."""
    n, held = settings.n_batches, settings.held_batches
    if eval_data is not None:
        return _batches(data, n), _batches(eval_data, held)
    taken = _batches(data, n + held)
    return taken[:n], taken[n:]


def _named(
    settings: SearchConfig, goal: Budget, objective_name: str, model_hash: str
) -> SearchConfig:
    """``settings`` with the default storage (a journal named by the model's hash) and study
    name (``<searcher>-<metric><keep>-<objective>[-stage[-<rule>]]``) filled in: each stage
    rule names its own study, so several share one storage."""
    storage = settings.storage or str(DEFAULT_DIR / f"study-{model_hash[:12]}.journal")
    per = "" if settings.space == "group" else "-stage" + _stage_rule_tag(settings.stages)
    name = settings.study_name or (
        f"{settings.searcher}-{goal.metric}{goal.keep:g}-{objective_name}{per}"
    )
    return settings.replace(storage=storage, study_name=name)


def _stage_rule_tag(stages: int | Mapping[str, str] | str | None) -> str:
    """``""`` for the name rule, ``-resolution``, ``-depth<d>``, or ``-map<hash>`` of a
    mapping (its sorted items)."""
    if stages is None:
        return ""
    if isinstance(stages, str):
        return f"-{stages}"
    if isinstance(stages, int):
        return f"-depth{stages}"
    text = json.dumps(sorted(stages.items()))
    return "-map" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _open_study(
    settings: SearchConfig,
    entry: Searcher,
    searched: SearchSpace,
    goal: Budget,
    objective_name: str,
    base: PruneConfig,
    model_hash: str,
) -> optuna.Study:
    """The stored study (created, or resumed if its model, budget, objective, layers and base
    config match), with interrupted trials queued again."""
    meta: dict[str, Any] = {"model": model_hash, "target": str(goal), "objective": objective_name,
                            "layers": searched.names, "config": base.model_dump_json()}  # fmt: skip
    if settings.space != "group":  # a per-layer study keeps the meta it always had
        meta["params"] = {p.name: list(p.patterns) for p in searched.params}
    lows = [p.low for p in searched.params]
    features = _features(searched)
    info = SpaceInfo(searched.param_names, lows, features, settings.trials, settings.seed)
    directions = ["maximize", "minimize"] if entry.multi_objective else ["maximize"]
    study = open_study(
        str(settings.storage), str(settings.study_name), directions, entry.build(info), meta
    )
    requeue_interrupted(study)
    if settings.start_uniform and not study.trials:
        study.enqueue_trial(dict.fromkeys(searched.param_names, 1.0), user_attrs={UNIFORM: True})
    if not entry.numbered and finished(study):  # a restarted sampler must not replay its draws
        study.sampler = entry.build(dataclasses.replace(info, seed=info.seed + len(study.trials)))
    return study


def _trial_threads(settings: SearchConfig) -> int | None:
    """torch threads per trial: ``threads``, else 1 on Ray workers, else torch's default."""
    if settings.threads is not None:
        return settings.threads
    return 1 if settings.workers > 1 or settings.address else None


def _confirmed(
    result: SearchResult, prepared: Prepared, searched: SearchSpace, timer: RuntimeTimer | None
) -> SearchResult:
    """With a latency budget and ``confirm``, ``result`` with the best trial's pruned model
    timed against the dense one."""
    goal = result.target
    if goal.metric != "latency" or not result.config.confirm:
        return result
    if not any(t.latency <= goal.keep + 1e-9 for t in result.completed):
        return result
    chosen = searched.selection(result.best.sparsities)
    timing = timer or RuntimeTimer(goal.runtime or "onnxruntime")
    real = timed_ratio(prepared.model, prepared.example, prepared.groups, chosen, timing)
    return dataclasses.replace(result, measured=real)


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
