"""One trial: prune by a candidate's sparsities (surgery on the prepared model) and score it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from prunekit.search.objectives import Objective
from prunekit.search.prepare import Prepared
from prunekit.search.space import SearchSpace
from prunekit.surgery.apply import apply_surgery


@dataclass(frozen=True)
class Outcome:
    """What one trial measured: its score (NaN when it failed), the analytic MACs and params
    ratios of its pruned model, the seconds it took and the error that failed it, if any."""

    number: int
    sparsities: dict[str, float]
    score: float
    macs: float
    params: float
    seconds: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class TrialEvaluator:
    """Scores candidates of one prepared model; picklable, so a Ray worker holds one."""

    def __init__(
        self, prepared: Prepared, space: SearchSpace, objective: Objective, threads: int | None
    ) -> None:
        self.prepared, self.space, self.objective, self.threads = (
            prepared, space, objective, threads,
        )  # fmt: skip

    def __call__(self, number: int, sparsities: dict[str, float]) -> Outcome:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        start = time.perf_counter()
        torch.manual_seed(number)
        macs = self.space.ratio(sparsities, "macs")
        params = self.space.ratio(sparsities, "params")
        error: str | None = None
        try:
            selection = self.space.selection(sparsities)
            pruned, _ = apply_surgery(self.prepared.model, self.prepared.groups, selection)
            score = self.objective(pruned)
        except Exception as err:  # a failed trial is recorded; the search goes on
            score, error = math.nan, f"{type(err).__name__}: {err}"
        if error is None and not math.isfinite(score):
            error = f"the objective is {score}"
        seconds = time.perf_counter() - start
        return Outcome(number, sparsities, score, macs, params, seconds, error)

    def evaluate_many(self, jobs: list[tuple[int, dict[str, float]]]) -> list[Outcome]:
        return [self(n, s) for n, s in jobs]


def outcome_attrs(outcome: Outcome) -> dict[str, Any]:
    """The trial's user attributes in the study (enough to replay it)."""
    return {
        "sparsities": outcome.sparsities,
        "macs": outcome.macs,
        "params": outcome.params,
        "seconds": outcome.seconds,
        "error": outcome.error,
    }
