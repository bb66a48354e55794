"""Structural pruning in one call: trace, group, score, select, surgery, verify, measure.

:func:`prune_structured` is what :func:`prunekit.prune` runs when it is given example inputs and
a structural granularity. Every stage is the public one
(:func:`~prunekit.graph.build_structural_groups`, any registered
:class:`~prunekit.estimators.Estimator`, :func:`~prunekit.core.select`,
:func:`~prunekit.surgery.apply_surgery`, :func:`~prunekit.surgery.verify`,
:func:`~prunekit.measure.measure`); this module only composes them and guarantees that the
user's model is untouched by any failure: everything runs on a copy, and ``inplace=True``
applies the already verified plan to the user's model only at the end.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.budget import RuntimeTimer, fastest_step, parse_target, select_to_target
from prunekit.config import PruneConfig
from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.selection import select
from prunekit.errors import ConfigError
from prunekit.estimators import Estimator, ScoringData
from prunekit.graph import StructuralGroups, build_structural_groups
from prunekit.masks import masks_of
from prunekit.measure import ModelStats, measure
from prunekit.measure.inputs import check_example_inputs
from prunekit.norms import batchnorm_layers, recalibrate_batchnorm
from prunekit.pruning.progress import Stages
from prunekit.result import PruneResult
from prunekit.surgery.apply import apply_plan, apply_surgery
from prunekit.surgery.convert import replace_multihead_attention
from prunekit.surgery.plan import Plan
from prunekit.surgery.verify import UnverifiableGroupError, VerificationReport, verify


def _included(groups: Sequence[Group], include: Sequence[str]) -> list[Group]:
    return [g for g in groups if any(fnmatch.fnmatchcase(g.layer, p) for p in include)]


def prune_structured(
    model: nn.Module,
    example_inputs: Any,
    config: PruneConfig,
    *,
    estimator: Estimator,
    data: ScoringData | None = None,
    inplace: bool = False,
    progress: bool = False,
) -> PruneResult:
    """Remove the lowest-scored units of every coupled group of ``model`` physically.

    ``config.exclude`` lists module-name glob patterns whose outputs keep their width (the final
    classifier never shrinks: model outputs keep their shape); ``config.include`` limits pruning
    to groups whose root layer matches. ``config.target`` (e.g. ``{"macs": 0.5}``) replaces the
    sparsity by a budget: the selection is searched until the pruned model keeps that fraction of
    the dense MACs or parameters. With ``config.verify`` the pruned model must compute what
    the original computes with the removed units zeroed (:func:`~prunekit.surgery.verify`,
    relative tolerance ``config.atol``); a mismatch raises
    :class:`~prunekit.surgery.VerificationError` naming the group that breaks it. Inexact
    groups (a normalisation over their width) cannot be verified by masking; if removing them
    makes the model fail to run, they are kept whole (``result.kept_unverifiable``).

    With ``config.recalibrate`` and scoring ``data``, BatchNorm running statistics of the
    pruned model are re-estimated on those batches after verification (the cheapest recovery
    step: removing channels shifts the statistics of every later layer); without data they stay
    as sliced.

    With ``config.heads`` (the default), every ``nn.MultiheadAttention`` is first replaced, in the
    working copy, by a :class:`~prunekit.ops.mha.PrunableMultiheadAttention` computing the
    same function, so its whole heads become units (``nn.MultiheadAttention`` itself cannot
    lose a head); the pruned model holds the replacements, groups and the plan name their
    tensors (``self_attn.q_proj.weight``), and ``plan.convert`` lets ``rebuild`` replay the
    conversion. ``heads=False`` keeps ``nn.MultiheadAttention`` and its heads.

    ``progress=True`` shows a bar naming the stage that is running (:data:`STAGES`).
    """
    if masks_of(model):
        raise ConfigError(
            "structural pruning needs a model without masks: bake them first "
            "(prunekit.bake_masks on a prunekit.clone_model copy) or remove them"
        )
    with Stages(STAGES, enabled=progress) as stages:
        return _prune_structured(model, example_inputs, config, estimator, data, inplace, stages)


STAGES = ("tracing", "scoring", "selecting", "surgery", "verifying", "recalibrating", "measuring")
"""The stages of :func:`prune_structured`, in order, as the progress bar names them."""


def _prune_structured(
    model: nn.Module,
    example_inputs: Any,
    config: PruneConfig,
    estimator: Estimator,
    data: ScoringData | None,
    inplace: bool,
    stages: Stages,
) -> PruneResult:
    original = model
    check_example_inputs(model, example_inputs)
    stages.start("tracing")
    if config.heads:  # a new module tree holding the user's tensors, which no stage modifies
        model, _ = replace_multihead_attention(model, share_tensors=True)
    traced = build_structural_groups(model, example_inputs, ignore=tuple(config.exclude))
    pool = _included(traced, config.include)
    if not pool:
        raise ConfigError(
            f"no prunable group found (include={list(config.include)}, "
            f"exclude={list(config.exclude)}): every unit is fixed by the model's outputs or by "
            "exclusions"
        )
    stages.start("scoring")
    scores = estimator.score(model, pool, data)
    stages.start("selecting")
    config = _resolve_round_to(model, example_inputs, config)
    selection = _select(model, example_inputs, pool, scores, config, traced.inexact)
    searched = getattr(selection, "kept_whole", ())  # a target search kept them whole itself
    stages.start("surgery")
    if config.verify:
        stages.start("verifying")
        pruned, plan, selection, report, kept = _verified_surgery(
            model, example_inputs, traced, pool, scores, selection, config
        )
        kept = (*searched, *kept)
    else:
        pruned, plan = apply_surgery(model, pool, selection)
        report, kept = None, tuple(searched)
    if config.recalibrate:
        stages.start("recalibrating")
        recalibrate_after_surgery(
            pruned, data, removed=any(not bool(k.all()) for k in selection.values())
        )
    before = after = None
    notes: tuple[str, ...] = ()
    if config.metrics:
        stages.start("measuring")
        # the working copy: the same function and parameters, and with heads converted its
        # attention MACs are counted (PyTorch's counter cannot see into the fused MHA kernel)
        before, after, notes = measure_both(
            model, pruned, example_inputs, config.latency, report
        )  # the MACs verification counted while it ran both models
    if inplace:
        pruned = apply_in_place(original, pruned, plan)
    return PruneResult(
        model=pruned, config=config, groups=traced, scores=scores, selection=selection,
        estimator=estimator, granularity=config.granularity, plan=plan, verification=report,
        before=before, after=after, kept_unverifiable=kept, notes=notes,
    )  # fmt: skip


def _verified_surgery(
    model: nn.Module,
    example_inputs: Any,
    traced: StructuralGroups,
    pool: Sequence[Group],
    scores: Scores,
    selection: Selection,
    config: PruneConfig,
) -> tuple[nn.Module, Plan, Selection, VerificationReport, tuple[str, ...]]:
    """Surgery checked against masking. An inexact group whose width is written in code (the
    pruned model cannot run) is kept whole, the rest selected again (a target is then met by
    the other groups) and surgery redone; returns the pruned model, plan, final selection,
    report and the groups kept whole."""

    def check(pruned_model: nn.Module, chosen: Selection) -> VerificationReport:
        return verify(
            model, pruned_model, pool, chosen, example_inputs, atol=config.atol,
            exhaustive=config.verify_exhaustive, count_macs=config.metrics,
            inexact=traced.inexact, normalisations=traced.normalisations,
        )  # fmt: skip

    pruned, plan = apply_surgery(model, pool, selection)
    try:
        return pruned, plan, selection, check(pruned, selection), ()
    except UnverifiableGroupError as err:
        kept = err.groups  # the traceback holds the failed model: redo surgery after it
    whole = {name: torch.ones_like(selection[name], dtype=torch.bool) for name in kept}
    if config.target is not None:
        rest = [g for g in pool if g.name not in whole]
        chosen = _select(model, example_inputs, rest, scores, config, traced.inexact)
        selection = {**chosen, **whole}
    else:
        selection = {**selection, **whole}
    del pruned  # freed before the second surgery, so both never coexist
    pruned, plan = apply_surgery(model, pool, selection)
    return pruned, plan, selection, check(pruned, selection), kept


def _resolve_round_to(model: nn.Module, example_inputs: Any, config: PruneConfig) -> PruneConfig:
    """``round_to="auto"`` replaced by the width step the target's runtime (onnxruntime when
    the target names none) runs this model's layers fastest at, measured once."""
    if config.round_to != "auto":
        return config
    target = parse_target(config.target) if config.target is not None else None
    runtime = target.runtime if target is not None and target.runtime else "onnxruntime"
    step = fastest_step(model, example_inputs, RuntimeTimer(runtime))
    return config.replace(round_to=step)


def _select(
    model: nn.Module, example_inputs: Any, pool: Sequence[Group], scores: Scores,
    config: PruneConfig, inexact: frozenset[str] = frozenset(),
) -> Selection:  # fmt: skip
    """The selection: by sparsity or threshold, or searched to meet ``config.target`` (the
    search keeps whole any of the ``inexact`` groups whose removal stops the model running,
    and says which in the selection's ``kept_whole``)."""
    if config.target is None:
        return select(scores, pool, config.selection())
    return select_to_target(
        model, example_inputs, pool, scores, config.selection(), parse_target(config.target),
        inexact=inexact,
    )  # fmt: skip


def apply_in_place(user_model: nn.Module, pruned: nn.Module, plan: Plan) -> nn.Module:
    """Give the user's model the pruned shapes and values (``inplace=True``), only after the
    same plan succeeded and verified on a copy; returns the user's model."""
    with torch.no_grad():
        apply_plan(user_model, plan)
        user_model.load_state_dict(pruned.state_dict())
    return user_model


def measure_both(
    original: nn.Module,
    pruned: nn.Module,
    example_inputs: Any,
    latency: bool,
    report: VerificationReport | None = None,
) -> tuple[ModelStats | None, ModelStats | None, tuple[str, ...]]:
    """Measurements of both models (reusing the MAC counts ``report`` made, if any); a failure
    to measure is reported in the notes, never allowed to throw away a pruned and verified
    model."""
    counted = (report.macs_before, report.macs_after) if report else (None, None)
    try:
        before = measure(original, example_inputs, latency=latency, macs=counted[0])
        after = measure(pruned, example_inputs, latency=latency, macs=counted[1])
    except Exception as err:  # measuring is a report: the pruned model stands without it
        note = f"measuring the models failed ({type(err).__name__}: {err}); metrics omitted"
        warnings.warn(note, RuntimeWarning, stacklevel=3)
        return None, None, (note,)
    return before, after, ()


def recalibrate_after_surgery(pruned: nn.Module, data: ScoringData | None, removed: bool) -> None:
    """Re-estimate the pruned model's BatchNorm statistics on ``data`` when ``removed`` (units
    or blocks were cut); without data, warn that a model with BatchNorm keeps the dense model's
    statistics (they no longer match the inputs). Structural and layer pruning both call it."""

    layers = batchnorm_layers(pruned)
    if not layers or not removed:
        return
    if data is not None:
        recalibrate_batchnorm(pruned, data.batches, max_batches=None)
        return
    warnings.warn(
        f"units were removed but the {len(layers)} BatchNorm layer(s) keep the dense "
        "model's running statistics (sliced), which no longer match their inputs: pass data= "
        "to re-estimate them (the default), or call "
        "prunekit.recovery.recalibrate_batchnorm(model, loader) before evaluating",
        UserWarning,
        stacklevel=4,  # the caller of prunekit.prune
    )
