"""Torch-Pruning's arms of benchmarks/training_channels.py: ``tp.pruner.MetaPruner`` with global
pruning and its magnitude, Taylor or BN-scale importance, ``pruning_ratio`` found by bisection
to the same MAC target, then the same BatchNorm recalibration and recovery as prunekit's arms."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
import torch_pruning as tp
from channels_setup import Arm, Context, recalibrate, scoring_data, tune
from torch import nn

from prunekit.measure import count_macs

TP_IMPORTANCES: dict[str, Callable[[], Any]] = {
    "magnitude": tp.importance.MagnitudeImportance,
    "taylor": tp.importance.TaylorImportance,
    "bn-scale": tp.importance.BNScaleImportance,
}


def tp_prune(ctx: Context, model: nn.Module, name: str, ratio: float) -> nn.Module:
    """``tp.pruner.MetaPruner`` with global pruning at ``ratio`` on a copy of ``model`` (whose
    ``.grad`` holds the Taylor gradients; the copy keeps them)."""
    pruned = copy.deepcopy(model)
    for source, param in zip(model.parameters(), pruned.parameters(), strict=True):
        param.grad = None if source.grad is None else source.grad.clone()
    classifier = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1:]
    round_to = ctx.config.get("round_to", 1)
    pruner = tp.pruner.MetaPruner(
        pruned,
        ctx.example,
        importance=TP_IMPORTANCES[name](),
        global_pruning=True,
        pruning_ratio=ratio,
        ignored_layers=classifier,
        round_to=round_to if round_to > 1 else None,
    )
    pruner.step()
    pruned.zero_grad(set_to_none=True)
    return pruned


def torch_pruning_arm(ctx: Context, arm: Arm, ratio: float, seed: int) -> nn.Module:
    """Torch-Pruning to the MAC target (bisection on ``pruning_ratio``), then the same recovery."""
    scored = copy.deepcopy(ctx.dense).eval()
    if arm.estimator == "taylor":
        for inputs, targets in scoring_data(ctx, seed).batches:
            F.cross_entropy(scored(inputs), targets).backward()
    target = ctx.dense_macs / ratio
    lo, hi, best = 0.0, 1.0, None
    for _ in range(ctx.config.get("tp_bisection_steps", 12)):
        mid = (lo + hi) / 2
        candidate = tp_prune(ctx, scored, arm.estimator, mid)
        if count_macs(candidate, ctx.example).total <= target:
            hi, best = mid, candidate
        else:
            lo = mid
    if best is None:
        raise RuntimeError(f"Torch-Pruning cannot reach {ratio}x fewer MACs")
    recalibrate(ctx, best, seed)
    tune(ctx, best, ctx.config["budget_steps"], arm, seed)
    return best
