"""Structured width pruning of transformers: whole attention heads and MLP neurons.

:func:`prune_width` turns "remove 20% of the parameters" into a number of head units and MLP
neurons to remove from *every* block (the same widths everywhere, so the Hugging Face config
can describe them), scores the units on calibration windows, and removes them through the
structural pruner (:func:`prunekit.prune` with ``granularity="channel"``, ``scope="layer"``):
its trace makes a whole head the unit — with grouped-query attention one key/value head
together with its query heads — and an MLP neuron the rows of ``gate_proj`` / ``up_proj`` and
the column of ``down_proj``; surgery removes them, updates the modules and the config, and the
result is verified against masking.

How the budget is split (:func:`allocate`): the fraction of the prunable parameters (heads +
MLP) that the target represents is applied to the heads *rounded down* to whole head units
(attention never loses more than its proportional share), and MLP neurons, in steps of
``round_to``, make up the rest. With few key/value heads a head unit is coarse (SmolLM2-135M:
3 key/value heads, so one unit is a third of the attention), and rounding down means that small
targets remove MLP neurons only. If the MLP alone cannot reach the target, more head units go.

With ``split="data"`` the calibration windows decide instead: every feasible split (each count
of head units for which MLP neurons can make up the rest, :func:`candidate_splits`) is pruned
with the same unit scores, and the one with the lowest calibration loss wins (next-token
cross-entropy for a causal LM, the relative output error against the dense model for an
encoder; :func:`prunekit.llm.width_scores.calibration_loss`). This is the direct search over
the per-kind widths that Minitron (Muralidharan et al. 2024) runs with a few candidate
architectures, restricted to the one degree of freedom a parameter target leaves.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.api import prune
from prunekit.core.groups import Group, Scores
from prunekit.errors import ConfigError, DataError, check_sparsity
from prunekit.estimators import Estimator, get_estimator
from prunekit.graph import build_structural_groups
from prunekit.llm.blocks import find_blocks
from prunekit.llm.pruned_io import config_describes_shapes
from prunekit.llm.width_allocation import (
    UnitKind,
    WidthAllocation,
    allocate,
    candidate_splits,
    unit_kind,
)
from prunekit.llm.width_scores import (
    FixedScores,
    UnitActivation,
    calibration_loss,
    lm_scoring_data,
    reference_outputs,
)
from prunekit.masks import clone_model
from prunekit.surgery import Plan, VerificationReport

__all__ = [
    "HEAD_LAYERS",
    "MLP_LAYERS",
    "UnitKind",
    "WidthAllocation",
    "WidthPruneConfig",
    "WidthPruneResult",
    "allocate",
    "candidate_splits",
    "count_params",
    "plan_width",
    "prune_width",
    "unit_kind",
    "unit_kinds",
    "width_estimator",
]

Denominator = Literal["model", "blocks"]
Split = Literal["rule", "data"]

HEAD_LAYERS: tuple[str, ...] = ("*.self_attn.q_proj", "*.attention.self.query")
"""Query projections (LLaMA-family, BERT): the root layers of whole-head groups."""

MLP_LAYERS: tuple[str, ...] = ("*.mlp.gate_proj", "*.intermediate.dense")
"""First MLP projections (LLaMA-family, BERT): the root layers of MLP-neuron groups."""


def width_estimator(name: str) -> Estimator:
    """``"activation"`` is :class:`UnitActivation` (it can score heads); any other name is
    looked up in the estimator registry (``taylor``, ``magnitude``, ``random``, ...)."""
    return UnitActivation() if name == "activation" else get_estimator(name)


@dataclass(frozen=True)
class WidthPruneConfig:
    """What :func:`prune_width` removes and how it scores.

    Attributes:
        sparsity: fraction of parameters removed, in [0, 1), of the whole model
            (``of="model"``, embeddings included) or of the transformer blocks (``of="blocks"``).
        heads / mlp: whether attention-head units / MLP neurons may be removed.
        estimator: ``activation`` (default; :class:`UnitActivation`), ``taylor`` (first-order
            Taylor on the next-token loss, causal LMs), ``magnitude``, or another registry name.
        round_to: kept MLP widths are multiples of this (heads are whole units anyway).
        batch_size: calibration windows per scoring forward pass.
        verify: check the pruned model against masking (float64) before returning it.
        head_layers / mlp_layers: name patterns of the root layers of head and MLP groups.
        split: how the target is shared between head units and MLP neurons: ``"rule"`` (heads
            rounded down to their proportional share, :func:`allocate`) or ``"data"`` (the
            feasible split with the lowest calibration loss; see the module docstring).
    """

    sparsity: float
    of: Denominator = "model"
    heads: bool = True
    mlp: bool = True
    estimator: str = "activation"
    round_to: int = 8
    batch_size: int = 1
    verify: bool = True
    head_layers: tuple[str, ...] = HEAD_LAYERS
    mlp_layers: tuple[str, ...] = MLP_LAYERS
    split: Split = "rule"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", check_sparsity(self.sparsity))
        if self.of not in ("model", "blocks"):
            raise ConfigError(f"of must be 'model' or 'blocks', got {self.of!r}")
        if self.split not in ("rule", "data"):
            raise ConfigError(f"split must be 'rule' or 'data', got {self.split!r}")
        if not (self.heads or self.mlp):
            raise ConfigError("nothing to prune: heads and mlp are both switched off")
        if self.round_to < 1 or self.batch_size < 1:
            raise ConfigError(
                f"round_to and batch_size must be at least 1, got {self.round_to}, "
                f"{self.batch_size}"
            )
        self.build_estimator()  # an unknown name fails here, with the registry's hint

    def build_estimator(self) -> Estimator:
        return width_estimator(self.estimator)


@dataclass(frozen=True)
class WidthPruneResult:
    """The narrower model and what was done.

    Attributes:
        model: the pruned model (the input model itself only with ``inplace=True``).
        plan: what surgery removed (``plan.to_json()``; :func:`prunekit.llm.save_pruned`).
        allocation: per-layer head units and MLP neurons before / removed.
        scores: one score per unit of every scored group.
        verification: the surgery-equals-masking report (``None`` when not verified).
        params_before / params_after / block_params_before: parameter counts (tied tensors
            once); ``sparsity`` and ``block_sparsity`` are the removed fractions of each.
        config_describes_shapes: ``type(model)(model.config)`` has the pruned shapes, so
            ``save_pretrained`` / ``from_pretrained`` round-trip (False for head-pruned BERT:
            use :func:`prunekit.llm.save_pruned` / :func:`prunekit.llm.load_pruned`).
    """

    model: nn.Module
    plan: Plan
    allocation: WidthAllocation
    scores: Scores
    verification: VerificationReport | None
    params_before: int
    params_after: int
    block_params_before: int
    config_describes_shapes: bool
    seconds: float
    split_losses: dict[str, float] = field(default_factory=dict)
    """With ``split="data"``: the calibration loss of every candidate split, keyed
    ``"heads=H mlp=M"`` (units removed per layer); empty with ``split="rule"``."""

    @property
    def removed_params(self) -> int:
        return self.params_before - self.params_after

    @property
    def sparsity(self) -> float:
        """Fraction of all parameters removed."""
        return self.removed_params / self.params_before

    @property
    def block_sparsity(self) -> float:
        """Removed parameters as a fraction of the transformer blocks' parameters."""
        return self.removed_params / self.block_params_before

    def summary(self) -> dict[str, Any]:
        """Plain-data record (for JSON)."""
        return {
            "allocation": self.allocation.to_dict(),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "block_params_before": self.block_params_before,
            "sparsity": round(self.sparsity, 6),
            "block_sparsity": round(self.block_sparsity, 6),
            "config_describes_shapes": self.config_describes_shapes,
            "verified": None if self.verification is None else self.verification.complete,
            "split_losses": dict(self.split_losses),
            "seconds": round(self.seconds, 2),
        }


def count_params(module: nn.Module) -> int:
    """Parameters of ``module``, tied tensors counted once."""
    return sum(p.numel() for p in module.parameters())


def _example_inputs(windows: Tensor | None) -> dict[str, Tensor]:
    if windows is None:
        return {"input_ids": torch.zeros((1, 8), dtype=torch.long)}
    return {"input_ids": windows[:1, :32].long()}


def unit_kinds(
    model: nn.Module, example: dict[str, Tensor], config: WidthPruneConfig
) -> tuple[list[Group], UnitKind | None, UnitKind | None]:
    """Trace ``model``: its structural groups and the head and MLP unit kinds ``config``
    allows (``None`` for a kind switched off)."""
    groups = build_structural_groups(model, example)
    heads = unit_kind("heads", groups, config.head_layers, 1) if config.heads else None
    mlp = unit_kind("mlp", groups, config.mlp_layers, config.round_to) if config.mlp else None
    return groups, heads, mlp


def overrides_of(
    allocation: WidthAllocation, heads: UnitKind | None, mlp: UnitKind | None
) -> dict[str, float]:
    """The per-pattern unit sparsities that realise ``allocation``."""
    return {
        pattern: removed / kind.units
        for kind, removed in ((heads, allocation.heads_removed), (mlp, allocation.mlp_removed))
        if kind is not None and removed > 0
        for pattern in kind.patterns
    }


def plan_width(
    model: nn.Module, example: dict[str, Tensor], config: WidthPruneConfig, target: float
) -> tuple[WidthAllocation, dict[str, float]]:
    """Trace ``model``, find its head and MLP units, allocate ``target`` parameters by the rule
    (:func:`allocate`; ``split="data"`` is :func:`prune_width`'s, it needs the model run on
    data), and return the allocation with the per-pattern unit sparsities (``overrides``)."""
    _, heads, mlp = unit_kinds(model, example, config)
    allocation = allocate(target, heads, mlp)
    return allocation, overrides_of(allocation, heads, mlp)


def prune_width(
    model: nn.Module,
    windows: Tensor | None,
    config: WidthPruneConfig,
    *,
    inplace: bool = False,
) -> WidthPruneResult:
    """Remove whole attention-head units and MLP neurons, uniformly over the blocks, to reach
    ``config.sparsity`` of the parameters (see the module docstring for the split).

    ``windows`` (``[n, seq_len]`` token ids, e.g. from :func:`calibration_windows`) are the
    scoring data of data-driven estimators, ``batch_size`` windows per forward pass; they may
    be ``None`` for ``magnitude``. The user's model is not modified unless ``inplace=True``
    (and then only after scoring, surgery and verification succeeded on a copy).
    """
    start = time.perf_counter()
    estimator = config.build_estimator()
    data = None
    if estimator.needs_data:
        if windows is None:
            raise DataError(f"estimator {estimator.name!r} needs calibration windows")
        data = lm_scoring_data(model, windows, batch_size=config.batch_size)
    if config.split == "data" and windows is None:
        raise DataError("split='data' rates the candidate splits on calibration windows")
    example = _example_inputs(windows)
    params_before = count_params(model)
    block_params = sum(count_params(b) for b in find_blocks(model).blocks)
    denominator = params_before if config.of == "model" else block_params
    target = config.sparsity * denominator
    groups, heads, mlp = unit_kinds(model, example, config)
    allocation = allocate(target, heads, mlp)
    losses: dict[str, float] = {}
    if config.split == "data" and heads is not None and mlp is not None:
        options = candidate_splits(target, heads, mlp)
        if len(options) > 1:
            assert windows is not None
            patterns = (*heads.patterns, *mlp.patterns)
            scored = [g for g in groups if any(fnmatch.fnmatchcase(g.layer, p) for p in patterns)]
            estimator = FixedScores(scores=estimator.score(model, scored, data))
            data = None
            allocation, losses = _best_split(model, windows, config, estimator, options, heads, mlp)
    overrides = overrides_of(allocation, heads, mlp)
    if not overrides:  # the target is below half a unit
        pruned = model if inplace else clone_model(model)
        plan, scores, report = Plan({}), {}, None
    else:
        result = _prune_units(model, example, config, estimator, data, overrides, inplace)
        if result.plan is None:  # structural pruning always records its plan
            raise RuntimeError("width pruning returned no plan")
        pruned, plan, scores, report = result.model, result.plan, result.scores, result.verification
    return WidthPruneResult(
        pruned,
        plan,
        allocation,
        scores,
        report,
        params_before,
        count_params(pruned),
        block_params,
        config_describes_shapes(pruned),
        time.perf_counter() - start,
        losses,
    )


def _prune_units(
    model: nn.Module,
    example: dict[str, Tensor],
    config: WidthPruneConfig,
    estimator: Estimator,
    data: Any,
    overrides: dict[str, float],
    inplace: bool,
    *,
    verify: bool | None = None,
) -> Any:
    """The structural pruner on the head / MLP patterns of ``overrides`` (a PruneResult)."""
    return prune(
        model,
        example,
        sparsity=0.0,
        granularity="channel",
        estimator=estimator,
        data=data,
        scope="layer",
        include=list(overrides),
        overrides=overrides,
        verify=config.verify if verify is None else verify,
        metrics=False,
        inplace=inplace,
    )


def _best_split(
    model: nn.Module,
    windows: Tensor,
    config: WidthPruneConfig,
    estimator: FixedScores,
    options: Sequence[WidthAllocation],
    heads: UnitKind,
    mlp: UnitKind,
) -> tuple[WidthAllocation, dict[str, float]]:
    """The candidate split with the lowest calibration loss (fewer head units on a tie), and
    every candidate's loss. Each candidate is pruned, unverified, on a copy of ``model``."""
    example = _example_inputs(windows)
    reference = reference_outputs(model, windows, batch_size=config.batch_size)
    losses: dict[str, float] = {}
    best: tuple[float, WidthAllocation] | None = None
    for option in options:
        overrides = overrides_of(option, heads, mlp)
        if overrides:
            candidate = _prune_units(
                model, example, config, estimator, None, overrides, False, verify=False
            ).model
        else:
            candidate = model
        loss = calibration_loss(
            candidate, windows, batch_size=config.batch_size, reference=reference
        )
        del candidate
        losses[f"heads={option.heads_removed} mlp={option.mlp_removed}"] = loss
        if best is None or loss < best[0]:
            best = (loss, option)
    assert best is not None
    return best[1], losses
