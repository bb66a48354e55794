"""Layer granularity in one call: find residual blocks, score, select, remove, verify, measure.

:func:`prune_layers` is what :func:`prunekit.prune` runs for ``granularity="layer"``. A unit is a
whole residual block (:mod:`prunekit.graph.blocks`); each block is one
:class:`~prunekit.core.groups.Group` of one unit, so any estimator scores it
(:mod:`prunekit.estimators.blocks`) and :func:`~prunekit.core.select` chooses with the usual
:class:`~prunekit.core.SelectionConfig` (``sparsity`` is the fraction of candidate blocks
removed, ``threshold``, ``overrides``). Removed blocks become
:class:`~prunekit.surgery.blocks.IdentityBlock` s and are recorded in ``plan.blocks``.

Verification: the pruned model must compute what the original computes with the removed
blocks' outputs replaced by their inputs (forward hooks, :func:`~prunekit.graph.blocks.skipping`),
in float64, within ``atol`` relative to the largest output, as :func:`~prunekit.surgery.verify`
does for channels; a mismatch raises :class:`~prunekit.surgery.VerificationError` naming the
blocks that break it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.graph.blocks import ResidualBlock
from prunekit.surgery.apply import rebuild
from prunekit.surgery.blocks import block_entry
from prunekit.surgery.compare import RunMode, model_dtype
from prunekit.surgery.plan import Plan
from prunekit.surgery.verify import (
    VerificationError,
    VerificationReport,
    compare_outputs,
    default_atol,
    run_outputs,
)

LAYER_GRANULARITIES: tuple[str, ...] = ("layer",)
"""Granularity names that remove whole residual blocks (``"block"`` already names weight tiles,
``"block:4x4"``)."""


def is_layer_granularity(spec: object) -> bool:
    """Whether ``spec`` asks for layer granularity (whole residual blocks)."""
    return isinstance(spec, str) and spec.strip().lower() in LAYER_GRANULARITIES


def remove_residual_blocks(
    model: nn.Module, blocks: Sequence[ResidualBlock]
) -> tuple[nn.Module, Plan]:
    """A copy of ``model`` with every block of ``blocks`` replaced by the identity, and its plan.

    The input model is never modified; the removed blocks' tensors are never copied."""
    entries = {block.name: block_entry(block) for block in blocks}
    plan = Plan({}, {block.name: [0] for block in blocks}, blocks=entries)
    return rebuild(model, plan), plan


def _mismatch(
    original: nn.Module,
    pruned: nn.Module,
    removed: Sequence[str],
    inputs: Any,
    atol: float,
    dtype: torch.dtype | None,
) -> tuple[str | None, float, float, float]:
    """A description of how ``pruned`` differs from ``original`` with ``removed`` skipped
    (``None`` when it does not), and the difference, scale and tolerance."""
    want = run_outputs(original, inputs, dtype, removed)
    try:
        diff, scale, tol = compare_outputs(run_outputs(pruned, inputs, dtype), want, atol)
    except VerificationError as err:
        return str(err), float("inf"), 0.0, 0.0
    except Exception as err:  # the pruned model failed to run
        return f"the pruned model failed to run ({type(err).__name__}: {err})", float("inf"), 0, 0
    failure = None if diff <= tol else f"max |pruned - skipped| = {diff:.3g} > {tol:.3g}"
    return failure, diff, scale, tol


def verify_blocks(
    original: nn.Module,
    pruned: nn.Module,
    plan: Plan,
    example_inputs: Any,
    *,
    atol: float | None = None,
    exhaustive: bool = False,
    dtype: torch.dtype | None = None,
) -> VerificationReport:
    """Check that ``pruned`` computes what ``original`` computes with the blocks of
    ``plan.blocks`` skipped (outputs replaced by inputs); raise :class:`VerificationError`
    naming the blocks that break the equality on their own. The modes are those of
    :func:`~prunekit.surgery.verify`: fast by default (the models as they are, no tensor
    copied), ``exhaustive=True`` on float64 copies, ``dtype`` on copies in that dtype."""
    if exhaustive and dtype is None:
        dtype = torch.float64
    if atol is None:
        atol = default_atol(dtype or model_dtype(original))
    removed = list(plan.blocks)
    failure, diff, scale, tol = _mismatch(original, pruned, removed, example_inputs, atol, dtype)
    if failure is not None:
        culprits = []
        for name in removed:
            alone = rebuild(original, Plan({}, blocks={name: plan.blocks[name]}))
            if _mismatch(original, alone, [name], example_inputs, atol, dtype)[0]:
                culprits.append(name)
        raise VerificationError(
            f"removing blocks does not match skipping them: {failure}. Blocks that break it on "
            f"their own: {culprits or 'none alone (they fail only together)'}; removed blocks: "
            f"{removed[:20]}"
        )
    return VerificationReport(
        diff,
        scale,
        tol,
        RunMode(dtype).describe(original),
        tuple(removed),
        (),
        exhaustive=dtype is not None,
    )
