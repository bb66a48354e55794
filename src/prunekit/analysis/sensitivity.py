"""Per-layer sensitivity analysis: how much a task metric suffers when one layer alone is pruned.

For every group (one layer's units) and every sparsity, the group alone is pruned layer-wise from
the given scores (the lowest-scored ``round(sparsity * units)`` units are masked), the metric is
measured with the user's ``eval_fn``, and the group is restored before the next trial. Every other
group stays dense. The curves show which layers tolerate pruning (flat curves) and which do not;
:func:`prunekit.analysis.allocate` turns them into per-layer sparsities under a global budget (the
approach of Han et al. 2015, "Learning both Weights and Connections", and of Distiller's
sensitivity analysis).

The user's model is never touched: trials run on a working copy
(:func:`prunekit.masks.clone_model`) in which one group's slices are zeroed and restored, so
memory is about twice the model's.

On a network with BatchNorm, zeroing a layer's channels changes the inputs of every later
BatchNorm, whose running statistics then no longer match: measured as it is, one layer pruned by
a third can put the whole network at chance, and every curve of a residual network flattens at
chance after its first point. :func:`prunekit.prune` re-estimates the statistics after cutting
(:func:`prunekit.norms.recalibrate_batchnorm`, as in EagleEye, Li et al. 2020), so curves meant
to guide it should do the same: ``recalibrate=batches`` re-estimates them on those batches before
every measurement (the dense baseline included) and restores the dense statistics after it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from rich.table import Table
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from prunekit.core.groups import Group, Scores, selection_to_masks
from prunekit.core.scores import check_scores
from prunekit.core.selection import SelectionConfig, select
from prunekit.errors import ConfigError, DataError, check_sparsity
from prunekit.estimators import ScoringData
from prunekit.masks import Mask, apply_masks, clone_model
from prunekit.norms import batchnorm_layers, recalibrate_batchnorm

EvalFn = Callable[[nn.Module], float]
"""``eval_fn(model) -> metric``: accuracy, loss, perplexity, ... of a (masked) model."""

Curve = tuple[tuple[float, float], ...]
"""``((sparsity, metric), ...)`` in increasing sparsity."""

DEFAULT_SPARSITIES: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class SensitivityResult:
    """Metric of the dense model and, per group, the metric with that group alone pruned.

    Attributes:
        baseline: metric of the unpruned model.
        curves: group name -> ``((sparsity, metric), ...)`` in increasing sparsity.
        higher_is_better: True for metrics such as accuracy, False for loss or perplexity.
    """

    baseline: float
    curves: dict[str, Curve]
    higher_is_better: bool

    @property
    def groups(self) -> list[str]:
        return list(self.curves)

    @property
    def sparsities(self) -> tuple[float, ...]:
        """The sparsities measured (the same for every group)."""
        first = next(iter(self.curves.values()), ())
        return tuple(s for s, _ in first)

    def drop(self, group: str) -> Curve:
        """``((sparsity, metric lost), ...)`` for ``group``: positive means worse than dense,
        whichever direction the metric runs."""
        if group not in self.curves:
            raise KeyError(f"no sensitivity curve for group {group!r}; groups: {self.groups}")
        sign = 1.0 if self.higher_is_better else -1.0
        return tuple((s, sign * (self.baseline - m)) for s, m in self.curves[group])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (non-finite metrics become ``None``)."""
        return {
            "baseline": _json_float(self.baseline),
            "higher_is_better": self.higher_is_better,
            "curves": {
                name: [[s, _json_float(m)] for s, m in curve] for name, curve in self.curves.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityResult:
        """Rebuild a result written by :meth:`to_dict`."""
        curves = {
            name: tuple((float(s), _from_json(m)) for s, m in curve)
            for name, curve in data["curves"].items()
        }
        return cls(_from_json(data["baseline"]), curves, bool(data["higher_is_better"]))

    def table(self, title: str = "Sensitivity (metric with one layer pruned)") -> Table:
        """A rich table: one row per group, one column per sparsity."""
        table = Table(title=title)
        table.add_column("group")
        table.add_column("dense", justify="right")
        for s in self.sparsities:
            table.add_column(f"{s:.0%}", justify="right")
        for name, curve in self.curves.items():
            table.add_row(name, f"{self.baseline:.4g}", *(f"{m:.4g}" for _, m in curve))
        return table


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _from_json(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def check_sparsities(sparsities: Sequence[float]) -> tuple[float, ...]:
    """Validate sparsities and return them sorted and without repeats."""
    values = [check_sparsity(s, "sensitivity sparsity") for s in sparsities]
    if not values:
        raise ConfigError("sensitivity needs at least one sparsity")
    return tuple(sorted(set(values)))


def _metric(eval_fn: EvalFn, model: nn.Module, where: str) -> float:
    value = eval_fn(model)
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"eval_fn must return a number, got {type(value).__name__} ({where})")
    return float(value)


class _Trials:
    """A working copy of the model in which one group at a time is masked and restored.

    A plain tensor is multiplied by the trial mask in place and copied back afterwards. A tensor
    that is already parametrised (e.g. masked by the user, whose masks stay in effect) gets its
    trial mask through its :class:`~prunekit.masks.Mask` buffer, so the mask acts on the
    effective value. Only tensors that are already parametrised get a (combined) mask
    parametrisation, so every other tensor keeps its plain, fast forward path.

    With ``recalibrate`` (batches), :meth:`measure` re-estimates every BatchNorm's running
    statistics on them first, and :meth:`masked` restores the dense statistics on exit.
    """

    def __init__(
        self, model: nn.Module, groups: Sequence[Group], recalibrate: Iterable[Any] | None
    ) -> None:
        self.model = clone_model(model)
        names = list(dict.fromkeys(t for g in groups for t in g.tensor_names()))
        wrapped = [n for n in names if self._parametrized(n)]
        apply_masks(self.model, {n: torch.ones_like(self._value(n)) for n in wrapped})
        self.mask_buffers = {n: self._mask_buffer(n) for n in wrapped}
        self.plain = {n: self._value(n) for n in names if n not in self.mask_buffers}
        self.recalibrate = recalibrate
        self.statistics = (  # what recalibration overwrites: the BatchNorms' running buffers
            {
                f"{layer}.{n}": b
                for layer, module in batchnorm_layers(self.model)
                for n, b in module.named_buffers(recurse=False)
            }
            if recalibrate is not None
            else {}
        )
        self.dense_statistics = {n: b.clone() for n, b in self.statistics.items()}

    def measure(self, eval_fn: EvalFn, where: str) -> float:
        """The metric of the working copy as it is now, after recalibration if asked for."""
        if self.recalibrate is not None:
            recalibrate_batchnorm(self.model, self.recalibrate, max_batches=None)
        return _metric(eval_fn, self.model, where)

    def restore_statistics(self) -> None:
        with torch.no_grad():
            for name, buffer in self.statistics.items():
                buffer.copy_(self.dense_statistics[name])

    def _split(self, name: str) -> tuple[nn.Module, str]:
        module_name, _, attr = name.rpartition(".")
        return self.model.get_submodule(module_name), attr

    def _parametrized(self, name: str) -> bool:
        return parametrize.is_parametrized(*self._split(name))

    def _value(self, name: str) -> Tensor:
        value = getattr(*self._split(name))
        assert isinstance(value, Tensor)
        return value.detach()

    def _mask_buffer(self, name: str) -> Tensor:
        module, attr = self._split(name)
        for p in module.parametrizations[attr]:  # type: ignore[index]
            if isinstance(p, Mask):
                assert isinstance(p.mask, Tensor)
                return p.mask
        raise AssertionError(f"no mask on {name!r} after apply_masks")

    @contextmanager
    def masked(self, masks: Mapping[str, Tensor]) -> Iterator[nn.Module]:
        """The copy with ``masks`` applied on top of its own values, restored on exit."""
        targets = {
            n: self.mask_buffers[n] if n in self.mask_buffers else self.plain[n] for n in masks
        }
        saved = {n: t.clone() for n, t in targets.items()}
        try:
            with torch.no_grad():
                for name, t in targets.items():
                    t.mul_(masks[name].to(t))
            yield self.model
        finally:
            with torch.no_grad():
                for name, t in targets.items():
                    t.copy_(saved[name])
            self.restore_statistics()


def _calibration(data: ScoringData | Iterable[Any] | None) -> list[Any] | None:
    """The recalibration batches as a list (a loader is read once), or ``None``."""
    if data is None:
        return None
    batches = list(data.batches if isinstance(data, ScoringData) else data)
    if not batches:
        raise DataError("sensitivity: recalibrate= holds no batches")
    return batches


def sensitivity(
    model: nn.Module,
    groups: Sequence[Group],
    scores: Scores,
    eval_fn: EvalFn,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    *,
    higher_is_better: bool,
    progress: bool = True,
    recalibrate: ScoringData | Iterable[Any] | None = None,
) -> SensitivityResult:
    """Measure the metric with each group alone pruned at each sparsity.

    Args:
        model: the model; it is not modified (trials run on a deep copy).
        groups: the groups to analyse (e.g. from :func:`prunekit.build_groups`).
        scores: one score per unit of every group (from any estimator); each trial removes the
            lowest-scored ``round(sparsity * n_units)`` units of one group (at least one unit kept).
        eval_fn: ``eval_fn(model) -> float`` on held-out data; it receives the working copy
            with one group masked, and should set eval mode and ``torch.no_grad`` itself.
        sparsities: fractions of units removed, each in [0, 1).
        higher_is_better: True for accuracy-like metrics, False for loss-like ones.
        progress: show a progress bar over the trials.
        recalibrate: ``(inputs, targets)`` batches (or a :class:`ScoringData`) on which every
            BatchNorm's running statistics are re-estimated before each measurement, as
            :func:`prunekit.prune` does after cutting (see the module docs); all of them are used
            in every trial, so pass a few. Without it, a model with BatchNorm gets a warning.
    """
    points = check_sparsities(sparsities)
    if not groups:
        raise ConfigError("sensitivity needs at least one group")
    patterned = [g.name for g in groups if g.pattern is not None]
    if patterned:
        raise ConfigError(
            f"group {patterned[0]!r} has a fixed N:M pattern, so its sparsity cannot vary; "
            "analyse sensitivity at element, block or channel granularity"
        )
    check_scores(scores, groups)
    calibration = _calibration(recalibrate)
    if calibration is None:
        _warn_stale_batchnorm(model)
    trials = _Trials(model, groups, calibration)
    with trials.masked({}):
        baseline = trials.measure(eval_fn, "dense model")
    curves: dict[str, Curve] = {}
    with tqdm(
        total=len(groups) * len(points),
        desc="sensitivity",
        leave=False,
        disable=None if progress else True,
    ) as bar:
        for group in groups:
            curve = []
            for s in points:
                config = SelectionConfig(sparsity=s, scope="layer", min_keep_fraction=0.0)
                keep = select({group.name: scores[group.name]}, [group], config)
                masks = selection_to_masks([group], keep)
                with trials.masked(masks):
                    curve.append((s, trials.measure(eval_fn, f"group {group.name!r} at {s}")))
                bar.update(1)
            curves[group.name] = tuple(curve)
    return SensitivityResult(baseline, curves, higher_is_better)


def _warn_stale_batchnorm(model: nn.Module) -> None:
    layers = batchnorm_layers(model)
    if layers:
        warnings.warn(
            f"sensitivity: the model has {len(layers)} BatchNorm layer(s) (first: "
            f"{layers[0][0]!r}) and recalibrate=None, so every trial keeps the dense running "
            "statistics, which stop matching once a layer is pruned (prunekit.prune re-estimates "
            "them); the curves can fall to chance at low sparsities and mislead allocate(): pass "
            "recalibrate=<a few training batches>",
            UserWarning,
            stacklevel=3,
        )
