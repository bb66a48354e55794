"""The one-call API: score -> select -> mask, composed from the stages.

``prunekit.prune(model, sparsity=0.9)`` is a thin layer over :func:`build_groups`,
an :class:`~prunekit.estimators.Estimator`, :func:`~prunekit.core.select` and
:func:`~prunekit.masks.apply_masks`; each stage can be used alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunekit.core.groups import Group, Masks, Scores, Selection, selection_to_masks
from prunekit.core.scores import Normalization
from prunekit.core.selection import Scope, SelectionConfig, select
from prunekit.errors import ConfigError
from prunekit.estimators import Estimator, ScoringData, as_scoring_data, get_estimator
from prunekit.estimators.data import LossFn
from prunekit.granularity import Granularity, build_groups, get_granularity
from prunekit.masks import apply_masks, clone_model

DataLike = ScoringData | Iterable[Any] | None


@dataclass(frozen=True)
class ScoreResult:
    """Groups of a model at a granularity and one score per unit."""

    groups: list[Group]
    scores: Scores
    estimator: Estimator
    granularity: Granularity


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did: the masked model and every intermediate, as plain data."""

    model: nn.Module
    groups: list[Group]
    scores: Scores
    selection: Selection
    masks: Masks
    config: SelectionConfig
    estimator: Estimator
    granularity: Granularity

    @property
    def removed_units(self) -> int:
        return sum(int((~keep).sum()) for keep in self.selection.values())

    @property
    def total_units(self) -> int:
        return sum(keep.numel() for keep in self.selection.values())


def score(
    model: nn.Module,
    *,
    granularity: str | Granularity = "element",
    estimator: str | Estimator = "magnitude",
    estimator_options: Mapping[str, Any] | None = None,
    data: DataLike = None,
    loss_fn: LossFn | None = None,
    n_batches: int | None = 8,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> ScoreResult:
    """Score every unit of every prunable layer of ``model``.

    Args:
        granularity: what a unit is (``"element"``, ``"2:4"``, ``"block:4x4"``, ``"channel"``).
        estimator: registry name or instance; ``estimator_options`` go to its constructor.
        data: batches of ``(inputs, targets)`` for data-driven estimators (a loader, a list or a
            :class:`ScoringData`); the first ``n_batches`` are used.
        loss_fn: ``loss_fn(outputs, targets)``; cross-entropy by default.
        include / exclude: glob patterns on layer names.
    """
    gran = get_granularity(granularity)
    est = get_estimator(estimator, **dict(estimator_options or {}))
    groups = build_groups(model, gran, include, exclude)
    scoring_data = as_scoring_data(data, loss_fn, n_batches)
    return ScoreResult(groups, est.score(model, groups, scoring_data), est, gran)


def prune(
    model: nn.Module,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    granularity: str | Granularity = "element",
    estimator: str | Estimator = "magnitude",
    estimator_options: Mapping[str, Any] | None = None,
    data: DataLike = None,
    loss_fn: LossFn | None = None,
    n_batches: int | None = 8,
    scope: Scope = "global",
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    overrides: Mapping[str, float] | None = None,
    min_keep: int = 1,
    normalize: Normalization = "none",
    inplace: bool = False,
) -> PruneResult:
    """Score, select and mask in one call.

    The user's model is not modified unless ``inplace=True``; every check (names, sparsity,
    data, finite scores, feasible selection) runs before any mask is applied, so a failure
    leaves the model as it was. N:M granularities fix the sparsity at ``1 - N/M`` and need no
    ``sparsity``. Returns a :class:`PruneResult` whose ``model`` is the masked model.
    """
    gran = get_granularity(granularity)
    config = SelectionConfig(
        sparsity=sparsity,
        threshold=threshold,
        scope=scope,
        overrides=dict(overrides or {}),
        min_keep=min_keep,
        normalize=normalize,
    )
    if gran.pattern is None and sparsity is None and threshold is None and not config.overrides:
        raise ConfigError("prune() needs sparsity= or threshold= (or an N:M granularity)")
    scored = score(
        model,
        granularity=gran,
        estimator=estimator,
        estimator_options=estimator_options,
        data=data,
        loss_fn=loss_fn,
        n_batches=n_batches,
        include=include,
        exclude=exclude,
    )
    selection = select(scored.scores, scored.groups, config)
    masks = selection_to_masks(scored.groups, selection)
    target = model if inplace else clone_model(model)
    apply_masks(target, masks)
    return PruneResult(
        target, scored.groups, scored.scores, selection, masks, config, scored.estimator, gran
    )
