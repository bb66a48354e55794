"""What a search found: every trial, the Pareto front, the best point, as a table, a plot,
JSON and a recipe that ``prunekit prune`` replays."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.trial import TrialState
from rich.table import Table

from prunekit.config import PruneConfig
from prunekit.errors import ConfigError
from prunekit.recipe import Recipe
from prunekit.search.budget import Budget
from prunekit.search.config import SearchConfig
from prunekit.search.storage import INTERRUPTED, UNIFORM


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its per-layer sparsities (after projection on the budget; enough to replay
    it), score, analytic MACs and params ratios, seconds and state; with a latency or size
    budget, its cost ratio in that metric (NaN otherwise)."""

    number: int
    state: str
    score: float
    macs: float
    params: float
    seconds: float
    sparsities: dict[str, float]
    error: str | None = None
    latency: float = math.nan
    size: float = math.nan
    uniform: bool = False
    """Whether the trial evaluates the uniform allocation (``start_uniform``)."""

    def cost(self, metric: str) -> float:
        """The kept fraction of ``metric`` (``macs``, ``params``, ``latency`` or ``size``)."""
        return float(getattr(self, metric))


def records(study: optuna.Study) -> list[TrialRecord]:
    """The finished trials of ``study`` (interrupted ones left out), in trial order."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.FAIL) or t.user_attrs.get(INTERRUPTED):
            continue
        attrs = t.user_attrs
        complete = t.state == TrialState.COMPLETE
        score = t.values[0] if complete and t.values else math.nan
        out.append(TrialRecord(
            number=t.number, state="complete" if complete else "failed", score=float(score),
            macs=float(attrs.get("macs", math.nan)), params=float(attrs.get("params", math.nan)),
            seconds=float(attrs.get("seconds", math.nan)),
            sparsities=dict(attrs.get("sparsities", {})), error=attrs.get("error"),
            latency=float(attrs.get("latency", math.nan)),
            size=float(attrs.get("size", math.nan)), uniform=bool(attrs.get(UNIFORM, False)),
        ))  # fmt: skip
    return sorted(out, key=lambda r: r.number)


def pareto_front(trials: Sequence[TrialRecord], metric: str) -> list[TrialRecord]:
    """Complete trials no other beats on both score (higher) and cost (lower), by cost."""
    done = [t for t in trials if t.state == "complete"]
    front = [
        t
        for t in done
        if not any(
            o.score >= t.score
            and o.cost(metric) <= t.cost(metric)
            and (o.score > t.score or o.cost(metric) < t.cost(metric))
            for o in done
        )
    ]
    return sorted(front, key=lambda t: (t.cost(metric), -t.score, t.number))


@dataclass(frozen=True)
class SearchResult:
    """All trials of a search, its budget, the search options it ran with (``storage`` and
    ``study_name`` filled in) and the base pruning config the sparsities apply to."""

    trials: list[TrialRecord]
    target: Budget
    config: SearchConfig
    prune: PruneConfig
    objective: str
    """The objective's name, or ``"function"`` for a callable objective."""
    measured: float | None = None
    """With a latency budget: the best trial's pruned model timed against the dense one in the
    runtime (the table's prediction is :attr:`TrialRecord.latency`)."""

    @property
    def searcher(self) -> str:
        return self.config.searcher

    @property
    def storage(self) -> str:
        """Where the study is stored (a journal file, a database URL or ``:memory:``)."""
        return self.config.storage or ""

    @property
    def study_name(self) -> str:
        return self.config.study_name or ""

    @property
    def completed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "complete"]

    @property
    def front(self) -> list[TrialRecord]:
        """The Pareto front on score and the target's metric."""
        return pareto_front(self.trials, self.target.metric)

    @property
    def uniform(self) -> TrialRecord | None:
        """The completed trial of the uniform allocation (a study started with
        ``start_uniform``), the fixed rule the best trial is measured against; else ``None``."""
        return next((t for t in self.completed if t.uniform), None)

    @property
    def best(self) -> TrialRecord:
        """The highest-scoring complete trial within the budget (lowest number on ties)."""
        within = [
            t for t in self.completed if t.cost(self.target.metric) <= self.target.keep + 1e-9
        ]
        if not within:
            raise ConfigError("search: no trial completed within the budget")
        return max(within, key=lambda t: (t.score, -t.number))

    def prune_config(self, trial: TrialRecord | None = None) -> PruneConfig:
        """The pruning config that replays ``trial`` (default :attr:`best`)."""
        chosen = trial or self.best
        return self.prune.replace(
            sparsity=0.0, scope="layer", target=None, threshold=None,
            overrides=dict(chosen.sparsities),
        )  # fmt: skip

    def recipe(
        self, base: Recipe | Mapping[str, Any] | None = None, trial: TrialRecord | None = None
    ) -> dict[str, Any]:
        """A recipe (plain data) whose ``prune:`` section replays ``trial``: ``base``'s model,
        data, training and outputs, or the defaults."""
        if isinstance(base, Recipe):
            data = base.model_dump(mode="json", exclude={"prune"})
        else:
            data = {k: v for k, v in dict(base or {}).items() if k not in ("prune", "search")}
        data["prune"] = self.prune_config(trial).model_dump(mode="json", exclude_defaults=True)
        return data

    def write_recipe(
        self,
        path: str | Path,
        base: Recipe | Mapping[str, Any] | None = None,
        trial: TrialRecord | None = None,
    ) -> Path:
        """Write :meth:`recipe` as YAML."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(self.recipe(base, trial), sort_keys=False))
        return out

    def to_dict(self) -> dict[str, Any]:
        front = {t.number for t in self.front}
        return {
            "target": self.target.as_dict(),
            "searcher": self.searcher,
            "objective": self.objective,
            "storage": self.storage,
            "study_name": self.study_name,
            "search": self.config.model_dump(mode="json"),
            "prune": self.prune.model_dump(mode="json", exclude_defaults=True),
            "best": self.best.number if self.completed else None,
            "measured": self.measured,
            "trials": [{**asdict(t), "pareto": t.number in front} for t in self.trials],
        }

    def write_json(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=True)
        out.write_text(text)
        return out

    def table(self, *, front_only: bool = True) -> Table:
        """A rich table of the Pareto front (or every trial)."""
        rows = self.front if front_only else self.trials
        title = f"{self.searcher}: {'Pareto front' if front_only else 'trials'} ({self.target})"
        table = Table(title=title)
        extra = self.target.metric in ("latency", "size")
        columns = ["trial", "score", "MACs kept", "params kept"]
        columns += [f"{self.target.metric} kept"] if extra else []
        for name in (*columns, "seconds", "state"):
            table.add_column(name, justify="right")
        best = self.best.number if self.completed else None
        for t in rows:
            mark = " *" if t.number == best else ""
            cost = [f"{t.cost(self.target.metric):.3f}"] if extra else []
            table.add_row(
                f"{t.number}{mark}", f"{t.score:.4f}", f"{t.macs:.3f}", f"{t.params:.3f}", *cost,
                f"{t.seconds:.2f}", t.state if t.error is None else f"failed: {t.error[:40]}",
            )  # fmt: skip
        return table

    def plot(self, path: str | Path) -> Path:
        """Score against the target's cost ratio: every trial, the front joined, the best marked."""
        metric = self.target.metric
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        done = self.completed
        ax.scatter([t.cost(metric) for t in done], [t.score for t in done], s=14, alpha=0.5,
                   label="trials")  # fmt: skip
        front = self.front
        ax.plot([t.cost(metric) for t in front], [t.score for t in front], "o-", color="C3",
                label="Pareto front")  # fmt: skip
        if done:
            best = self.best
            ax.scatter([best.cost(metric)], [best.score], marker="*", s=160, color="C2",
                       label=f"best (trial {best.number})", zorder=3)  # fmt: skip
        ax.axvline(self.target.keep, linestyle="--", color="gray", label=f"budget {self.target}")
        ax.set_xlabel(f"{metric} kept (fraction of dense)")
        ax.set_ylabel(f"score ({self.objective})")
        ax.set_title(f"Allocation search: {self.searcher}")
        ax.legend(fontsize=8)
        out = Path(path)
        if not out.suffix:
            out = out.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        FigureCanvasAgg(fig)
        fig.savefig(out, dpi=100, bbox_inches="tight")
        return out
