"""The one-call API: score -> select -> mask or surgery, composed from the stages.

``prunekit.prune(model, sparsity=0.9)`` is a thin layer over :func:`build_groups`,
an :class:`~prunekit.estimators.Estimator`, :func:`~prunekit.core.select` and
:func:`~prunekit.masks.apply_masks`; each stage can be used alone.

``prunekit.prune(model, example_inputs, sparsity=0.5, granularity="channel")`` prunes
*structurally*: it traces the model's dependency graph, removes the selected units physically and
verifies the result (:func:`prunekit.surgery.structured.prune_structured`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from torch import nn

from prunekit.core.groups import Group, Masks, Scores, Selection, selection_to_masks
from prunekit.core.scores import Normalization
from prunekit.core.selection import Scope, SelectionConfig, select
from prunekit.errors import ConfigError
from prunekit.estimators import Estimator, ScoringData, as_scoring_data, get_estimator
from prunekit.estimators.blocks import block_estimator
from prunekit.estimators.data import LossFn
from prunekit.granularity import Granularity, build_groups, get_granularity
from prunekit.masks import apply_masks, clone_model
from prunekit.measure import ExampleInputs
from prunekit.surgery.layers import is_layer_granularity, prune_layers
from prunekit.surgery.structured import StructuralResult, prune_structured
from prunekit.surgery.verify import DEFAULT_ATOL

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


@overload
def prune(
    model: nn.Module,
    example_inputs: None = None,
    *,
    sparsity: float | None = ...,
    threshold: float | None = ...,
    granularity: str | Granularity = ...,
    estimator: str | Estimator = ...,
    estimator_options: Mapping[str, Any] | None = ...,
    data: DataLike = ...,
    loss_fn: LossFn | None = ...,
    n_batches: int | None = ...,
    scope: Scope = ...,
    include: Sequence[str] = ...,
    exclude: Sequence[str] = ...,
    overrides: Mapping[str, float] | None = ...,
    min_keep: int = ...,
    round_to: int = ...,
    normalize: Normalization = ...,
    surgery: Literal[False] | None = ...,
    verify: bool = ...,
    atol: float = ...,
    metrics: bool = ...,
    latency: bool = ...,
    inplace: bool = ...,
    heads: bool = ...,
    recalibrate: bool = ...,
) -> PruneResult: ...


@overload
def prune(
    model: nn.Module,
    example_inputs: ExampleInputs | None = None,
    *,
    sparsity: float | None = ...,
    threshold: float | None = ...,
    granularity: str | Granularity = ...,
    estimator: str | Estimator = ...,
    estimator_options: Mapping[str, Any] | None = ...,
    data: DataLike = ...,
    loss_fn: LossFn | None = ...,
    n_batches: int | None = ...,
    scope: Scope = ...,
    include: Sequence[str] = ...,
    exclude: Sequence[str] = ...,
    overrides: Mapping[str, float] | None = ...,
    min_keep: int = ...,
    round_to: int = ...,
    normalize: Normalization = ...,
    surgery: bool | None = ...,
    verify: bool = ...,
    atol: float = ...,
    metrics: bool = ...,
    latency: bool = ...,
    inplace: bool = ...,
    heads: bool = ...,
    recalibrate: bool = ...,
) -> PruneResult | StructuralResult: ...


def prune(
    model: nn.Module,
    example_inputs: ExampleInputs | None = None,
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
    round_to: int = 1,
    normalize: Normalization = "none",
    surgery: bool | None = None,
    verify: bool = True,
    atol: float = DEFAULT_ATOL,
    metrics: bool = True,
    latency: bool = False,
    inplace: bool = False,
    heads: bool = True,
    recalibrate: bool = True,
) -> PruneResult | StructuralResult:
    """Score, select and mask (or remove) in one call.

    The user's model is not modified unless ``inplace=True``; every check (names, sparsity,
    data, finite scores, feasible selection, verification) runs before the model is touched, so
    a failure leaves it as it was. N:M granularities fix the sparsity at ``1 - N/M`` and need no
    ``sparsity``.

    **Masks** (the default, and whenever ``example_inputs`` is not given): returns a
    :class:`PruneResult` whose ``model`` is the masked model.

    **Surgery** (``example_inputs`` given with a structural granularity such as ``"channel"``,
    or ``surgery=True``): the model is traced on ``example_inputs`` (a tensor, a tuple of
    positional arguments or a dict of keyword arguments) into coupled groups (a conv's filters
    with their BatchNorm entries, the next layer's inputs and every residual partner), the
    groups are scored with ``estimator``, the selected units are removed physically, and,
    with ``verify=True``, the pruned model is checked against the original with the removed
    units zeroed (float64, relative tolerance ``atol``; a mismatch raises
    :class:`~prunekit.surgery.VerificationError` naming the group). Returns a
    :class:`~prunekit.surgery.structured.StructuralResult` with ``.model``, ``.plan``
    (``.plan.to_json()`` for :func:`prunekit.io.save`), ``.verification`` and before / after
    measurements (``.params_ratio``, ``.macs_ratio``, ``.metrics``; ``latency=True`` also times
    both). ``exclude`` (the issue's ``ignore``) names modules whose outputs keep their width; the
    model's outputs always keep theirs, so the final classifier never shrinks. ``round_to``
    rounds kept widths up to a multiple, ``min_keep`` is the narrowest a group may become.
    ``heads=True`` (the default) lets whole heads of ``nn.MultiheadAttention`` go: the working
    copy holds an exact drop-in replacement (:mod:`prunekit.ops.mha`) whose inner width may
    shrink; ``heads=False`` keeps their width. With ``recalibrate=True`` (the default) and
    ``data``, the pruned model's BatchNorm statistics are re-estimated on the scoring batches
    (the cheapest recovery step); without data a warning says they were only sliced.

    **Layers** (``granularity="layer"``, with ``example_inputs``): whole residual blocks are the
    units (:func:`~prunekit.surgery.layers.prune_layers`); ``sparsity`` is the fraction of
    candidate blocks removed, ``estimator`` is ``"angular"``, ``"oracle"`` (loss increase when
    the block is skipped) or any registry name lifted to blocks; the result is a
    :class:`~prunekit.surgery.structured.StructuralResult` whose plan records the removed
    blocks.
    """
    config = SelectionConfig(
        sparsity=sparsity,
        threshold=threshold,
        scope=scope,
        overrides=dict(overrides or {}),
        min_keep=min_keep,
        round_to=round_to,
        normalize=normalize,
    )
    surgery_options: dict[str, Any] = {
        "config": config,
        "include": include,
        "exclude": exclude,
        "verify_result": verify,
        "atol": atol,
        "metrics": metrics,
        "latency": latency,
        "inplace": inplace,
        "recalibrate": recalibrate,
    }
    if is_layer_granularity(granularity):
        if example_inputs is None or surgery is False:
            raise ConfigError(
                "granularity 'layer' removes whole residual blocks by surgery: it needs "
                "example_inputs (to find the blocks) and cannot mask (surgery=False)"
            )
        lifted = block_estimator(estimator, **dict(estimator_options or {}))
        scoring = as_scoring_data(data, loss_fn, n_batches)
        return prune_layers(
            model, example_inputs, estimator=lifted, data=scoring, **surgery_options
        )
    gran = get_granularity(granularity)
    if gran.pattern is None and sparsity is None and threshold is None and not config.overrides:
        raise ConfigError("prune() needs sparsity= or threshold= (or an N:M granularity)")
    if surgery is None:
        surgery = example_inputs is not None and gran.structural
    if surgery:
        if example_inputs is None:
            raise ConfigError("surgery needs example_inputs to trace the model's dependencies")
        if not gran.structural:
            raise ConfigError(
                f"surgery removes whole units; granularity {gran.spec!r} is not structural "
                "(use 'channel', or masks for element, N:M and block)"
            )
        unit_estimator = get_estimator(estimator, **dict(estimator_options or {}))
        scoring = as_scoring_data(data, loss_fn, n_batches)
        return prune_structured(
            model, example_inputs, estimator=unit_estimator, data=scoring, heads=heads,
            **surgery_options,
        )  # fmt: skip
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
