"""Block scores: how much a whole residual block matters (higher means keep).

A block group (:func:`prunekit.graph.blocks.block_groups`) has one unit, the block at the
module path ``group.layer``. Two estimators score blocks by what they compute:

- ``angular``: the mean ``1 - cos(x, y)`` of the block's input and output hidden states over
  the scoring data, in [0, 2]; a block whose output points where its input did changes little.
  This is the Block Influence of ShortGPT (Men et al. 2024, "ShortGPT: Layers in Large Language
  Models are More Redundant Than You Expect") and the one-block case of the angular distance of
  Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers".
- ``oracle``: the loss increase ``L(block skipped) - L`` on the scoring data, by brute force (one
  pass over the data per block); skipping is the removal itself, so this is the loss-change
  oracle of the registry lifted to blocks. For a block, zeroing its weights is *not* removing
  it (a post-norm block would output zeros), which is why blocks need their own oracle.

Every other registry estimator is lifted by reducing its element values over all the block's
parameters (``reduction="sum"``, the default, or ``"mean"``):
:func:`prunekit.estimators.block_estimator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.core.groups import Group, Scores
from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError
from prunekit.estimators.base import BLOCKS, Estimator
from prunekit.estimators.collect import mean_loss, progress
from prunekit.estimators.data import ScoringData
from prunekit.graph.blocks import hidden_input, hidden_output, skipping

Per = Literal["auto", "sample", "token"]


def angular_distances(x: Tensor, y: Tensor, per: Literal["sample", "token"]) -> Tensor:
    """``1 - cos(x, y)``, clamped to [0, 2], per sample (all features of a sample flattened) or
    per token (over the last dimension). Where ``y == x`` the distance is exactly 0, zero
    vectors included (the cosine of two zero vectors is otherwise taken as 0)."""
    x, y = x.float(), y.float()
    if per == "sample":
        x, y = x.flatten(1), y.flatten(1)
    distance = (1.0 - F.cosine_similarity(x, y, dim=-1)).clamp(0.0, 2.0)
    return distance.masked_fill((x == y).all(dim=-1), 0.0)


def _resolve_per(per: Per, x: Tensor) -> Literal["sample", "token"]:
    if per == "auto":
        return "token" if x.dim() == 3 else "sample"
    return per


def block_of(model: nn.Module, group: Group) -> nn.Module:
    """The block a block group stands for (the module at ``group.layer``)."""
    if group.n_units != 1:
        raise ConfigError(
            f"group {group.name!r} has {group.n_units} units; block estimators score block "
            "groups of one unit each (prunekit.graph.blocks.block_groups)"
        )
    try:
        return model.get_submodule(group.layer)
    except AttributeError as err:
        raise ConfigError(f"group {group.name!r}: the model has no block {group.layer!r}") from err


@dataclass(frozen=True)
class Angular(Estimator):
    """Mean angular distance ``1 - cos`` of each block's input and output (see the module
    docstring). ``per="auto"`` compares tokens for ``[batch, tokens, features]`` hidden states
    and whole samples otherwise (feature maps, flat features)."""

    name: ClassVar[str] = "angular"
    summary: ClassVar[str] = "mean 1 - cos(block input, block output) over the data"
    needs_data: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({BLOCKS})
    per: Per = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per not in ("auto", "sample", "token"):
            raise ConfigError(
                f"estimator 'angular': per must be 'auto', 'sample' or 'token', got {self.per!r}"
            )

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        totals = {g.name: [0.0, 0] for g in groups}

        def hook_for(name: str) -> Any:
            def hook(m: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
                x, (y, _) = hidden_input(args, kwargs), hidden_output(out)
                if x is not None and y is not None and x.shape == y.shape:
                    d = angular_distances(x, y, _resolve_per(self.per, x))
                    totals[name][0] += float(d.sum())
                    totals[name][1] += d.numel()

            return hook

        handles = [
            block_of(model, g).register_forward_hook(hook_for(g.name), with_kwargs=True)
            for g in groups
        ]
        try:
            with eval_mode(model), torch.no_grad():
                for batch in progress(data, self.name):
                    data.forward(model, batch)
        finally:
            for handle in handles:
                handle.remove()
        unseen = [name for name, (_, count) in totals.items() if count == 0]
        if unseen:
            raise ConfigError(
                f"estimator 'angular': block {unseen[0]!r} never ran on the scoring data with "
                "hidden states of one shape in and out"
            )
        return {name: torch.tensor([total / count]) for name, (total, count) in totals.items()}


@dataclass(frozen=True)
class SkipOracle(Estimator):
    """Loss increase when each block alone is skipped (its output replaced by its input)."""

    name: ClassVar[str] = "oracle"
    summary: ClassVar[str] = "loss increase when the block is skipped (brute force)"
    needs_data: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({BLOCKS})

    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        assert data is not None
        blocks = [block_of(model, g) for g in groups]
        dense = mean_loss(model, data, {})
        scores: Scores = {}
        bar = tqdm(groups, desc="skip-oracle", leave=False, disable=None if data.progress else True)
        for group, block in zip(bar, blocks, strict=True):
            with skipping(block):
                scores[group.name] = torch.tensor([mean_loss(model, data, {}) - dense])
        return scores
