"""The trial loop: ask the study for candidates, project them on the budget, evaluate them
(here, or on Ray workers), tell the study the results.

The driver alone writes to the study; workers only evaluate (candidate in, :class:`Outcome`
out), so any Optuna storage works, and the storage never sees two writers. With ``workers > 1``
or a Ray ``address``, evaluation runs on Ray actors, each holding one
:class:`~prunekit.search.evaluate.TrialEvaluator` (the prepared model, its groups, scores and
data), through :class:`ray.util.ActorPool`; Ray is started locally on demand and shut down
after, or joins the cluster at ``address``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from tqdm.auto import tqdm

from prunekit.errors import ConfigError
from prunekit.search.evaluate import Outcome, TrialEvaluator, outcome_attrs
from prunekit.search.space import SearchSpace
from prunekit.search.storage import finished

Jobs = list[tuple[int, dict[str, float]]]


class Executor(Protocol):
    capacity: int

    def submit(self, number: int, sparsities: dict[str, float]) -> None: ...
    def next(self) -> Outcome: ...
    def close(self) -> None: ...


class LocalExecutor:
    """Evaluates in this process, one trial at a time."""

    capacity = 1

    def __init__(self, evaluator: TrialEvaluator) -> None:
        self.evaluator = evaluator
        self.pending: Jobs = []

    def submit(self, number: int, sparsities: dict[str, float]) -> None:
        self.pending.append((number, sparsities))

    def next(self) -> Outcome:
        return self.evaluator(*self.pending.pop(0))

    def close(self) -> None:
        self.pending.clear()


class RayExecutor:
    """Evaluates on ``workers`` Ray actors (local Ray started on demand, or ``address``)."""

    def __init__(self, evaluator: TrialEvaluator, workers: int, address: str | None) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError as error:
            raise ConfigError(
                f"workers={workers} runs trials on Ray, which is not installed: "
                "pip install -c constraints.txt 'prunekit[search]'"
            ) from error

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(
                address=address, num_cpus=workers if address is None else None,
                include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
            )  # fmt: skip
        worker = ray.remote(num_cpus=1)(_Worker)
        shared = ray.put(evaluator)
        self.capacity = workers
        self.pool = ActorPool([worker.remote(shared) for _ in range(workers)])

    def submit(self, number: int, sparsities: dict[str, float]) -> None:
        self.pool.submit(lambda actor, job: actor.run.remote(*job), (number, sparsities))

    def next(self) -> Outcome:
        outcome: Outcome = self.pool.get_next_unordered()
        return outcome

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


class _Worker:
    """A Ray actor's body: holds one evaluator."""

    def __init__(self, evaluator: TrialEvaluator) -> None:
        self.evaluator = evaluator

    def run(self, number: int, sparsities: dict[str, float]) -> Outcome:
        return self.evaluator(number, sparsities)


def make_executor(evaluator: TrialEvaluator, workers: int, address: str | None) -> Executor:
    if workers > 1 or address is not None:
        return RayExecutor(evaluator, workers, address)
    return LocalExecutor(evaluator)


def _attrs(outcome: Outcome, space: SearchSpace) -> dict[str, Any]:
    """The trial's user attributes: the outcome's, and its cost in the budget's metric when
    that is latency (from the table measured once) or size."""
    attrs = outcome_attrs(outcome)
    metric = space.target.metric
    if metric not in attrs:
        attrs[metric] = space.ratio(outcome.sparsities, metric)
    return attrs


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    executor: Executor,
    trials: int,
    *,
    multi: bool,
    progress: bool,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> None:
    """Run trials until ``trials`` have finished (complete, or failed by their objective)."""
    distributions: dict[str, Any] = {p.name: FloatDistribution(p.low, 1.0) for p in space.params}
    metric = space.target.metric
    done = len(finished(study))
    in_flight: dict[int, optuna.Trial] = {}
    best = _best(study)
    bar = tqdm(total=trials, initial=done, desc="search", disable=not progress, leave=False)
    try:
        while done < trials:
            while len(in_flight) < executor.capacity and done + len(in_flight) < trials:
                trial = study.ask(distributions)
                keeps = space.expand(trial.params)
                sparsities = space.project({p: 1.0 - k for p, k in keeps.items()}, fill=not multi)
                executor.submit(trial.number, sparsities)
                in_flight[trial.number] = trial
            outcome = executor.next()
            trial = in_flight.pop(outcome.number)
            attrs = _attrs(outcome, space)
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            if outcome.failed:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, [outcome.score, attrs[metric]] if multi else [outcome.score])
                best = outcome.score if best is None else max(best, outcome.score)
            done += 1
            bar.update(1)
            if best is not None:
                bar.set_postfix_str(f"best score {best:.4f}")
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        bar.close()
        executor.close()


def _best(study: optuna.Study) -> float | None:
    scores = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    finite = [s for s in scores if s is not None and math.isfinite(s)]
    return max(finite) if finite else None
