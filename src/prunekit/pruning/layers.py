"""Layer granularity in one call: find residual blocks, score, select, remove, verify, measure.

:func:`prune_layers` is what :func:`prunekit.prune` runs for ``granularity="layer"``. A unit is a
whole residual block (:mod:`prunekit.graph.blocks`); each block is one
:class:`~prunekit.core.groups.Group` of one unit, so any estimator scores it and
:func:`~prunekit.core.select` chooses with the usual selection options (``sparsity`` is the
fraction of candidate blocks removed, ``threshold``, ``overrides``). Removed blocks become
:class:`~prunekit.surgery.blocks.IdentityBlock` s, recorded in ``plan.blocks`` and verified by
:func:`~prunekit.surgery.layers.verify_blocks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.config import PruneConfig
from prunekit.core.groups import Group, Selection
from prunekit.core.selection import SelectionConfig, select
from prunekit.errors import ConfigError
from prunekit.estimators import Estimator, ScoringData
from prunekit.graph import StructuralGroups
from prunekit.graph.blocks import ResidualBlock, block_groups, find_residual_blocks
from prunekit.masks import masks_of
from prunekit.pruning.structural import (
    apply_in_place,
    measure_both,
    recalibrate_after_surgery,
)
from prunekit.result import PruneResult
from prunekit.surgery.layers import remove_residual_blocks, verify_blocks


def _check_config(config: SelectionConfig) -> SelectionConfig:
    """The selection config for block groups: one global ranking, any block may go."""
    if config.sparsity is None and config.threshold is None and not config.overrides:
        raise ConfigError("layer granularity needs sparsity= (the fraction of blocks removed)")
    if config.scope != "global":
        raise ConfigError(
            "layer granularity ranks blocks globally (a block is one unit); scope='layer' "
            "has no meaning there"
        )
    if config.round_to != 1 or config.normalize != "none":
        raise ConfigError(
            "round_to and normalize have no meaning at layer granularity (a block is one unit)"
        )
    return dataclasses.replace(config, min_keep=0)


def _check_removal(groups: Sequence[Group], selection: Selection, config: SelectionConfig) -> None:
    n_removed = sum(int((~keep).sum()) for keep in selection.values())
    if n_removed == len(groups):
        raise ConfigError(
            f"the selection removes every one of the {len(groups)} candidate blocks "
            f"({[g.name for g in groups][:10]}); lower sparsity= or exclude= some"
        )
    if n_removed == 0 and config.sparsity:
        raise ConfigError(
            f"sparsity {config.sparsity} of {len(groups)} candidate blocks removes none "
            f"(round({config.sparsity} * {len(groups)}) = 0); use at least "
            f"{1 / len(groups):.3g} to remove one"
        )


def _find(
    model: nn.Module, example_inputs: Any, include: Sequence[str], exclude: Sequence[str]
) -> list[ResidualBlock]:
    blocks = find_residual_blocks(model, example_inputs, include=include, exclude=exclude)
    if not blocks:
        raise ConfigError(
            f"model {type(model).__name__} has no removable residual block (a submodule whose "
            f"output is its input plus a function of it; include={list(include)}, "
            f"exclude={list(exclude)})"
        )
    return blocks


def prune_layers(
    model: nn.Module,
    example_inputs: Any,
    config: PruneConfig,
    *,
    estimator: Estimator,
    data: ScoringData | None = None,
    inplace: bool = False,
) -> PruneResult:
    """Remove the lowest-scored residual blocks of ``model`` (see the module docstring).

    ``config.sparsity`` is the fraction of candidate blocks removed (``round(sparsity * n)``);
    ``config.include`` / ``config.exclude`` are glob patterns on block paths. Everything runs on
    copies; ``inplace=True`` replaces the blocks in the user's model only after verification.
    With ``config.recalibrate`` and scoring ``data``, BatchNorm statistics of the pruned model are
    re-estimated on those batches.
    """
    if masks_of(model):
        raise ConfigError(
            "layer pruning needs a model without masks: bake them first "
            "(prunekit.bake_masks on a prunekit.clone_model copy) or remove them"
        )
    selection_config = _check_config(config.selection())
    if estimator.needs_data and data is None:
        raise ConfigError(
            f"estimator {estimator.name!r} needs data= (batches of (inputs, targets)) to score "
            "blocks; 'magnitude' and 'random' need none"
        )
    blocks = _find(model, example_inputs, config.include, config.exclude)
    groups = StructuralGroups(block_groups(model, blocks))
    scores = estimator.score(model, groups, data)
    selection = select(scores, groups, selection_config)
    _check_removal(groups, selection, selection_config)
    removed = [b for b, g in zip(blocks, groups, strict=True) if not bool(selection[g.name].all())]
    pruned, plan = remove_residual_blocks(model, removed)
    report = None
    if config.verify:
        report = verify_blocks(
            model, pruned, plan, example_inputs, atol=config.atol,
            dtype=torch.float64 if config.verify_exhaustive else None,
        )  # fmt: skip
    if config.recalibrate:
        recalibrate_after_surgery(pruned, data, removed=bool(removed))
    before = after = None
    notes: tuple[str, ...] = ()
    if config.metrics:
        before, after, notes = measure_both(model, pruned, example_inputs, config.latency)
    if inplace:
        pruned = apply_in_place(model, pruned, plan)
    return PruneResult(
        model=pruned, config=config, groups=groups, scores=scores, selection=selection,
        estimator=estimator, granularity=config.granularity, plan=plan, verification=report,
        before=before, after=after, notes=notes,
    )  # fmt: skip
