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
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.core.groups import Group, Scores, Selection
from prunekit.core.selection import SelectionConfig, select
from prunekit.errors import ConfigError
from prunekit.estimators import Estimator, ScoringData
from prunekit.graph import StructuralGroups, build_structural_groups
from prunekit.masks import masks_of
from prunekit.measure import ModelStats, Row, compare, measure
from prunekit.surgery.apply import apply_plan, apply_surgery
from prunekit.surgery.convert import replace_multihead_attention
from prunekit.surgery.plan import Plan
from prunekit.surgery.verify import (
    DEFAULT_ATOL,
    UnverifiableGroupError,
    VerificationReport,
    verify,
)


@dataclass(frozen=True)
class StructuralResult:
    """What structural pruning did, as plain data.

    Attributes:
        model: the physically pruned model (a new module unless ``inplace=True``).
        plan: what was removed (``plan.to_json()`` for saving; see :class:`Plan`).
        groups: every group the trace found (``groups.inexact`` names the inexact ones).
        scores / selection: per group, one score and one keep flag per unit.
        verification: the verification report, or ``None`` when ``verify=False``.
        before / after: measurements of the original and the pruned model (``None`` when
            ``metrics=False``).
        kept_unverifiable: inexact groups the selection wanted to shrink but that were kept
            whole because removing them made the model fail to run (a width written in code,
            e.g. torchvision ViT's ``hidden_dim``).
    """

    model: nn.Module
    plan: Plan
    groups: StructuralGroups
    scores: Scores
    selection: Selection
    config: SelectionConfig
    estimator: Estimator
    verification: VerificationReport | None
    before: ModelStats | None
    after: ModelStats | None
    kept_unverifiable: tuple[str, ...] = ()

    @property
    def removed_units(self) -> int:
        return sum(int((~keep).sum()) for keep in self.selection.values())

    @property
    def total_units(self) -> int:
        return sum(keep.numel() for keep in self.selection.values())

    @property
    def metrics(self) -> list[Row]:
        """Before / after rows (params, MACs, size, ...) with their ratios."""
        if self.before is None or self.after is None:
            return []
        return compare(self.before, self.after)

    @property
    def params_ratio(self) -> float | None:
        """Parameters after / before."""
        return _ratio(self.before, self.after, "params")

    @property
    def macs_ratio(self) -> float | None:
        """Multiply-accumulates after / before."""
        return _ratio(self.before, self.after, "macs")


def _ratio(before: ModelStats | None, after: ModelStats | None, attr: str) -> float | None:
    if before is None or after is None or not getattr(before, attr):
        return None
    return float(getattr(after, attr)) / float(getattr(before, attr))


def _included(groups: Sequence[Group], include: Sequence[str]) -> list[Group]:
    return [g for g in groups if any(fnmatch.fnmatchcase(g.layer, p) for p in include)]


def prune_structured(
    model: nn.Module,
    example_inputs: Any,
    *,
    config: SelectionConfig,
    estimator: Estimator,
    data: ScoringData | None = None,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    verify_result: bool = True,
    atol: float = DEFAULT_ATOL,
    metrics: bool = True,
    latency: bool = False,
    inplace: bool = False,
    recalibrate: bool = True,
    heads: bool = True,
) -> StructuralResult:
    """Remove the lowest-scored units of every coupled group of ``model`` physically.

    ``exclude`` lists module-name glob patterns whose outputs keep their width (the final
    classifier never shrinks: model outputs keep their shape); ``include`` limits pruning to
    groups whose root layer matches. With ``verify_result`` the pruned model must compute what
    the original computes with the removed units zeroed (:func:`~prunekit.surgery.verify`,
    float64, relative tolerance ``atol``); a mismatch raises
    :class:`~prunekit.surgery.VerificationError` naming the group that breaks it. Inexact
    groups (a normalisation over their width) cannot be verified by masking; if removing them
    makes the model fail to run, they are kept whole (``result.kept_unverifiable``).

    With ``recalibrate`` and scoring ``data``, BatchNorm running statistics of the pruned model
    are re-estimated on those batches after verification (the cheapest recovery step: removing
    channels shifts the statistics of every later layer); without data they stay as sliced.

    With ``heads`` (the default), every ``nn.MultiheadAttention`` is first replaced, in the
    working copy, by a :class:`~prunekit.ops.mha.PrunableMultiheadAttention` computing the
    same function, so its whole heads become units (``nn.MultiheadAttention`` itself cannot
    lose a head); the pruned model holds the replacements, groups and the plan name their
    tensors (``self_attn.q_proj.weight``), and ``plan.convert`` lets ``rebuild`` replay the
    conversion. ``heads=False`` keeps ``nn.MultiheadAttention`` and its heads.
    """
    if masks_of(model):
        raise ConfigError(
            "structural pruning needs a model without masks: bake them first "
            "(prunekit.bake_masks on a prunekit.clone_model copy) or remove them"
        )
    original = model
    if heads:  # a new module tree holding the user's tensors, which no stage modifies
        model, _ = replace_multihead_attention(model, share_tensors=True)
    traced = build_structural_groups(model, example_inputs, ignore=tuple(exclude))
    pool = _included(traced, include)
    if not pool:
        raise ConfigError(
            f"no prunable group found (include={list(include)}, exclude={list(exclude)}): "
            "every unit is fixed by the model's outputs or by exclusions"
        )
    scores = estimator.score(model, pool, data)
    selection = select(scores, pool, config)
    pruned, plan = apply_surgery(model, pool, selection)
    report = None
    kept: tuple[str, ...] = ()
    if verify_result:

        def check(pruned_model: nn.Module) -> VerificationReport:
            return verify(
                model, pruned_model, pool, selection, example_inputs, atol=atol,
                inexact=traced.inexact, normalisations=traced.normalisations,
            )  # fmt: skip

        try:
            report = check(pruned)
        except UnverifiableGroupError as err:
            # an inexact group whose width is written in code: keep it whole and redo surgery
            kept = err.groups
            for name in kept:
                selection[name] = torch.ones_like(selection[name], dtype=torch.bool)
            pruned, plan = apply_surgery(model, pool, selection)
            report = check(pruned)
    if recalibrate:
        recalibrate_after_surgery(
            pruned, data, removed=any(not bool(k.all()) for k in selection.values())
        )
    before = after = None
    if metrics:
        # the working copy: the same function and parameters, and with heads converted its
        # attention MACs are counted (PyTorch's counter cannot see into the fused MHA kernel)
        before = measure(model, example_inputs, latency=latency)
        after = measure(pruned, example_inputs, latency=latency)
    if inplace:
        with torch.no_grad():
            apply_plan(original, plan)  # the same plan already succeeded on an identical copy
            original.load_state_dict(pruned.state_dict())
        pruned = original
    return StructuralResult(
        pruned, plan, traced, scores, selection, config, estimator, report, before, after, kept
    )


def recalibrate_after_surgery(pruned: nn.Module, data: ScoringData | None, removed: bool) -> None:
    """Re-estimate the pruned model's BatchNorm statistics on ``data`` when ``removed`` (units
    or blocks were cut); without data, warn that a model with BatchNorm keeps the dense model's
    statistics (they no longer match the inputs). Structural and layer pruning both call it."""
    # imported here: recovery builds on the one-call API, which builds on this module
    from prunekit.recovery.batchnorm import batchnorm_layers, recalibrate_batchnorm

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
