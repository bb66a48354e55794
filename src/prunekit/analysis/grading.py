"""Estimator grading: how well does each importance estimator rank units like the true loss change?

The oracle (:class:`~prunekit.estimators.Oracle`) removes each unit and measures the loss change
on the scoring data. Every other estimator scores the same groups on the same data, and its
scores are compared with the oracle's by rank correlation (Spearman's rho and Kendall's tau-b,
from ``scipy.stats``), over the units the oracle scored:

* **pooled**: all units of all groups ranked together, what a global selection relies on;
* **per group**: within each group, what a layer-wise selection relies on; the mean over groups
  (groups with fewer than two scored units or constant scores are left out of the mean).

An estimator that cannot score the granularity (activation-based ones at element granularity)
is listed as ``not applicable`` with the reason; other prunekit errors (e.g. ``mutual_info``
with non-integer targets) are listed as ``error``. The oracle is exact at neuron/channel
granularity; for element, block and N:M groups the default oracle measures 64 sampled units per
group, and the correlations use those units only.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rich.table import Table
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from prunekit.core.groups import Group, Scores
from prunekit.core.views import AxisView
from prunekit.errors import ConfigError, DataError, PrunekitError
from prunekit.estimators import (
    Estimator,
    Oracle,
    ScoringData,
    estimators_for,
    get_estimator,
)
from prunekit.estimators.data import LossFn, as_scoring_data
from prunekit.granularity import Granularity, build_groups, get_granularity

Status = Literal["ok", "not applicable", "error"]
ORACLE_SAMPLE = 64
"""Units per group the default oracle measures at element, block and N:M granularity."""


@dataclass(frozen=True)
class GradingRow:
    """One estimator's agreement with the oracle.

    Attributes:
        estimator: label (registry name, with options that differ from the defaults).
        spearman, kendall: rank correlations with the oracle over all units of all groups.
        group_spearman, group_kendall: the mean of the per-group correlations.
        per_group: group name -> ``(spearman, kendall)`` within that group.
        seconds: time the estimator took to score.
        n_units: units compared (scored by both the oracle and the estimator).
        status: ``ok``, ``not applicable`` or ``error``; ``reason`` says why when not ``ok``.
    """

    estimator: str
    spearman: float
    kendall: float
    group_spearman: float
    group_kendall: float
    per_group: dict[str, tuple[float, float]]
    seconds: float
    n_units: int
    status: Status = "ok"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _clean(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["per_group"] = {k: [_clean(a), _clean(b)] for k, (a, b) in self.per_group.items()}
        return out


@dataclass(frozen=True)
class GradingResult:
    """The grading of several estimators against one oracle, rows sorted by pooled Spearman
    (best first; estimators without a correlation last).

    Attributes:
        rows: one per estimator.
        oracle: label of the oracle estimator.
        oracle_seconds: time the oracle took.
        n_units: units the oracle scored (over all groups).
        n_groups: groups graded.
        granularity: the granularity spec, when known.
    """

    rows: tuple[GradingRow, ...]
    oracle: str
    oracle_seconds: float
    n_units: int
    n_groups: int
    granularity: str | None = None

    def row(self, estimator: str) -> GradingRow:
        """The row of ``estimator`` (its label)."""
        for r in self.rows:
            if r.estimator == estimator:
                return r
        raise KeyError(f"no row {estimator!r}; rows: {[r.estimator for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "oracle": self.oracle,
            "oracle_seconds": self.oracle_seconds,
            "n_units": self.n_units,
            "n_groups": self.n_groups,
            "granularity": self.granularity,
            "rows": [r.to_dict() for r in self.rows],
        }

    def table(self) -> Table:
        """A rich table of the rows."""
        where = f" at {self.granularity} granularity" if self.granularity else ""
        table = Table(
            title=f"Estimators vs {self.oracle}{where}: rank correlation with the true loss change",
            caption=f"{self.n_units} units in {self.n_groups} groups; "
            f"oracle took {self.oracle_seconds:.2f} s",
        )
        for name, justify in [
            ("estimator", "left"),
            ("spearman", "right"),
            ("kendall", "right"),
            ("spearman/group", "right"),
            ("kendall/group", "right"),
            ("units", "right"),
            ("seconds", "right"),
            ("status", "left"),
        ]:
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in self.rows:
            status = r.status if r.status == "ok" else f"{r.status}: {r.reason}"
            table.add_row(
                r.estimator,
                _fmt(r.spearman),
                _fmt(r.kendall),
                _fmt(r.group_spearman),
                _fmt(r.group_kendall),
                str(r.n_units),
                f"{r.seconds:.3f}",
                status,
            )
        return table


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:+.3f}"


def _clean(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(spearman, kendall)`` of two score vectors; NaN with fewer than two units or when either
    is constant (no ranking to compare)."""
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(stats.spearmanr(a, b).statistic)
        tau = float(stats.kendalltau(a, b).statistic)
    return rho, tau


def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def label(estimator: Estimator) -> str:
    """``name`` plus the options that differ from the defaults, e.g. ``magnitude(p=2.0)``."""
    changed = [
        f"{f.name}={getattr(estimator, f.name)!r}"
        for f in dataclasses.fields(estimator)
        if f.default is not dataclasses.MISSING and getattr(estimator, f.name) != f.default
    ]
    return f"{estimator.name}({', '.join(changed)})" if changed else estimator.name


def default_oracle(groups: Sequence[Group]) -> Oracle:
    """The exact oracle for neuron/channel groups; a sampled one otherwise."""
    whole = all(isinstance(g.root.view, AxisView) and g.pattern is None for g in groups)
    return Oracle() if whole else Oracle(sample=ORACLE_SAMPLE)


def default_estimators() -> list[str]:
    """Every registered estimator except the oracle and those that need structural groups
    (``bn_scale``: grading scores per-layer groups, which hold no BatchNorm)."""
    return [n for n in estimators_for("channel") if n not in (Oracle.name, "bn_scale")]


def compare(
    oracle_scores: Scores, scores: Scores, groups: Sequence[Group]
) -> tuple[tuple[float, float], dict[str, tuple[float, float]], int]:
    """Pooled and per-group ``(spearman, kendall)`` over units both score, and how many."""
    pooled_o, pooled_e = [], []
    per_group: dict[str, tuple[float, float]] = {}
    for group in groups:
        o = oracle_scores[group.name].double().numpy()
        e = scores[group.name].double().numpy()
        both = ~np.isnan(o) & ~np.isnan(e)
        per_group[group.name] = correlation(o[both], e[both])
        pooled_o.append(o[both])
        pooled_e.append(e[both])
    o_all, e_all = np.concatenate(pooled_o), np.concatenate(pooled_e)
    return correlation(o_all, e_all), per_group, int(o_all.size)


def _grade_one(
    estimator: Estimator,
    name: str,
    model: nn.Module,
    groups: Sequence[Group],
    data: ScoringData,
    oracle_scores: Scores,
) -> GradingRow:
    start = time.perf_counter()
    try:
        scores = estimator.score(model, groups, data)
    except PrunekitError as err:
        seconds = time.perf_counter() - start
        status: Status = "not applicable" if isinstance(err, ConfigError) else "error"
        nan = math.nan
        return GradingRow(name, nan, nan, nan, nan, {}, seconds, 0, status, str(err))
    seconds = time.perf_counter() - start
    (rho, tau), per_group, n_units = compare(oracle_scores, scores, groups)
    return GradingRow(
        name,
        rho,
        tau,
        _nanmean(r for r, _ in per_group.values()),
        _nanmean(t for _, t in per_group.values()),
        per_group,
        seconds,
        n_units,
    )


def _labelled(estimators: Sequence[str | Estimator]) -> list[tuple[str, Estimator]]:
    out: list[tuple[str, Estimator]] = []
    seen: dict[str, int] = {}
    for spec in estimators:
        est = get_estimator(spec)
        name = label(est)
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", est))
    return out


def _sort_key(row: GradingRow) -> tuple[int, float]:
    return (1, 0.0) if math.isnan(row.spearman) else (0, -row.spearman)


def grade(
    model: nn.Module,
    groups: Sequence[Group],
    data: ScoringData,
    estimators: Sequence[str | Estimator] | None = None,
    *,
    oracle: Estimator | None = None,
    progress: bool = True,
    granularity: str | None = None,
) -> GradingResult:
    """Grade ``estimators`` (default: every registered one except the oracle) against
    ``oracle`` (default: :func:`default_oracle`) on the same groups and data.

    The oracle runs once; each estimator is timed. The model is not modified.
    ``granularity`` is only a label for the table.
    """
    if not groups:
        raise ConfigError("grading needs at least one group")
    if not isinstance(data, ScoringData):
        raise DataError("grade() needs data as a prunekit.ScoringData; grade_model() takes loaders")
    data = dataclasses.replace(data, progress=progress and data.progress)
    specs = default_estimators() if estimators is None else list(estimators)
    if not specs:
        raise ConfigError("no estimators to grade")
    labelled = _labelled(specs)
    truth = oracle if oracle is not None else default_oracle(groups)
    start = time.perf_counter()
    oracle_scores = truth.score(model, groups, data)
    oracle_seconds = time.perf_counter() - start
    n_scored = sum(int((~s.isnan()).sum()) for s in oracle_scores.values())
    rows = []
    for name, est in tqdm(
        labelled, desc="grading", leave=False, disable=None if progress else True
    ):
        rows.append(_grade_one(est, name, model, groups, data, oracle_scores))
    rows.sort(key=_sort_key)
    return GradingResult(
        tuple(rows), label(truth), oracle_seconds, n_scored, len(groups), granularity
    )


def grade_model(
    model: nn.Module,
    *,
    data: ScoringData | Iterable[Any],
    granularity: str | Granularity = "channel",
    loss_fn: LossFn | None = None,
    n_batches: int | None = 8,
    estimators: Sequence[str | Estimator] | None = None,
    oracle: Estimator | None = None,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    progress: bool = True,
) -> GradingResult:
    """Build the groups of ``model`` at ``granularity`` and the scoring data (the first
    ``n_batches`` of a loader, or a ready :class:`ScoringData`), then :func:`grade`."""
    gran = get_granularity(granularity)
    groups = build_groups(model, gran, include, exclude)
    scoring = as_scoring_data(data, loss_fn, n_batches)
    if scoring is None:
        raise DataError("grading needs data: a loader of (inputs, targets) batches")
    return grade(
        model,
        groups,
        scoring,
        estimators,
        oracle=oracle,
        progress=progress,
        granularity=gran.spec(),
    )
