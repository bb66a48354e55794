"""The one-call API: score -> select -> mask or surgery, composed from the stages.

``prunekit.prune(model, sparsity=0.9)`` is a thin layer over :func:`build_groups`,
an :class:`~prunekit.estimators.Estimator`, :func:`~prunekit.core.select` and
:func:`~prunekit.masks.apply_masks`; each stage can be used alone.

``prunekit.prune(model, example_inputs, sparsity=0.5, granularity="channel")`` prunes
*structurally*: it traces the model's dependency graph, removes the selected units physically and
verifies the result (:func:`prunekit.pruning.structural.prune_structured`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunekit.config import PruneConfig, make_config
from prunekit.core.groups import Group, Scores, selection_to_masks
from prunekit.core.selection import select
from prunekit.errors import ConfigError
from prunekit.estimators import (
    Estimator,
    ScoringData,
    as_scoring_data,
    block_estimator,
    get_estimator,
)
from prunekit.estimators.data import LossFn
from prunekit.granularity import Granularity, build_groups, get_granularity
from prunekit.masks import apply_masks, clone_model
from prunekit.measure import ExampleInputs
from prunekit.pruning import measure_both, prune_layers, prune_structured
from prunekit.result import PruneResult

DataLike = ScoringData | Iterable[Any] | None


@dataclass(frozen=True)
class ScoreResult:
    """Groups of a model at a granularity and one score per unit."""

    groups: list[Group]
    scores: Scores
    estimator: Estimator
    granularity: Granularity


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
    example_inputs: ExampleInputs | None = None,
    *,
    config: PruneConfig | Mapping[str, Any] | None = None,
    data: DataLike = None,
    loss_fn: LossFn | None = None,
    inplace: bool = False,
    progress: bool = False,
    **options: Any,
) -> PruneResult:
    """Score, select and mask (or remove) in one call.

    Options are the fields of :class:`~prunekit.config.PruneConfig` (``sparsity``,
    ``granularity``, ``estimator``, ``target``, ``scope``, ``exclude``, ...), given as keywords,
    as ``config=`` or both (keywords win); an unknown option is an error with a did-you-mean.
    ``estimator`` may also be an :class:`~prunekit.estimators.Estimator` instance and
    ``granularity`` a :class:`~prunekit.granularity.Granularity`.

    The user's model is not modified unless ``inplace=True``; every check (names, sparsity,
    data, finite scores, feasible selection, verification) runs before the model is touched, so
    a failure leaves it as it was. The result is a :class:`~prunekit.result.PruneResult` for
    every granularity. ``progress=True`` shows a bar over the stages of structural pruning.

    **Masks** (the default, and whenever ``example_inputs`` is not given): ``result.model`` is
    the masked model and ``result.plan`` is ``None``. N:M granularities fix the sparsity at
    ``1 - N/M``.

    **Surgery** (``example_inputs`` given with a structural granularity such as ``"channel"``,
    or ``surgery=True``): the model is traced on ``example_inputs`` (a tensor, a tuple of
    positional arguments or a dict of keyword arguments) into coupled groups (a conv's filters
    with their BatchNorm entries, the next layer's inputs and every residual partner), scored,
    selected (``target={"macs": 0.5}`` searches the selection that keeps half the dense MACs),
    removed physically and verified against the original with the removed units zeroed (a
    mismatch raises :class:`~prunekit.surgery.VerificationError` naming the group); see
    :func:`~prunekit.pruning.structural.prune_structured`. The model's outputs keep their
    width, so the final classifier never shrinks.

    **Layers** (``granularity="layer"``, with ``example_inputs``): whole residual blocks are the
    units (:func:`~prunekit.pruning.layers.prune_layers`); ``sparsity`` is the fraction of
    candidate blocks removed; ``estimator`` is ``"angular"``, ``"oracle"`` or any registry name
    lifted to blocks.
    """
    estimator_obj, options = _instances(options)
    cfg = make_config(config, options, estimator_instance=estimator_obj is not None)
    if cfg.is_layer:
        if example_inputs is None:
            raise ConfigError(
                "granularity 'layer' removes whole residual blocks by surgery: it needs "
                "example_inputs (to find the blocks)"
            )
        lifted = block_estimator(estimator_obj) if estimator_obj else cfg.build_estimator()
        scoring = as_scoring_data(data, loss_fn, cfg.n_batches)
        return prune_layers(model, example_inputs, cfg, estimator=lifted, data=scoring,
                            inplace=inplace)  # fmt: skip
    gran = get_granularity(cfg.granularity)
    surgery = cfg.surgery
    if surgery is None:
        surgery = example_inputs is not None and gran.structural
    if surgery or cfg.target is not None:
        if example_inputs is None:
            raise ConfigError(
                "surgery (and a MACs or params target) needs example_inputs to trace the "
                "model's dependencies, e.g. prunekit.prune(model, torch.randn(1, 3, 224, 224), ...)"
            )
        unit_estimator = estimator_obj or cfg.build_estimator()
        scoring = as_scoring_data(data, loss_fn, cfg.n_batches)
        return prune_structured(model, example_inputs, cfg, estimator=unit_estimator,
                                data=scoring, inplace=inplace, progress=progress)  # fmt: skip
    return _prune_masks(model, example_inputs, cfg, estimator_obj, data, loss_fn, inplace)


def _instances(options: Mapping[str, Any]) -> tuple[Estimator | None, dict[str, Any]]:
    """Split a user's estimator instance out of ``options``; a granularity instance becomes
    its spec string."""
    options = dict(options)
    estimator = options.get("estimator")
    instance = None
    if isinstance(estimator, Estimator):
        instance = estimator
        options["estimator"] = estimator.name
    if isinstance(options.get("granularity"), Granularity):
        options["granularity"] = options["granularity"].spec()
    return instance, options


def _options_for(config: PruneConfig, instance: Estimator | None) -> dict[str, Any]:
    return {} if instance is not None else dict(config.estimator_options)


def _prune_masks(
    model: nn.Module,
    example_inputs: ExampleInputs | None,
    cfg: PruneConfig,
    estimator: Estimator | None,
    data: DataLike,
    loss_fn: LossFn | None,
    inplace: bool,
) -> PruneResult:
    scored = score(
        model,
        granularity=cfg.granularity,
        estimator=estimator or cfg.estimator,
        estimator_options=_options_for(cfg, estimator),
        data=data,
        loss_fn=loss_fn,
        n_batches=cfg.n_batches,
        include=cfg.include,
        exclude=cfg.exclude,
    )
    selection = select(scored.scores, scored.groups, cfg.selection())
    masks = selection_to_masks(scored.groups, selection)
    target = model if inplace else clone_model(model)
    apply_masks(target, masks)
    before = after = None
    notes: tuple[str, ...] = ()
    if cfg.metrics and example_inputs is not None:
        before, after, notes = measure_both(model, target, example_inputs, cfg.latency)
    return PruneResult(
        model=target, config=cfg, groups=scored.groups, scores=scored.scores,
        selection=selection, estimator=scored.estimator, granularity=scored.granularity.spec(),
        masks=masks, before=before, after=after, notes=notes,
    )  # fmt: skip
