"""Depth pruning: score whole transformer blocks and remove the least important ones.

Scores (higher means keep, as everywhere in prunekit; the per-token distance and
:func:`skipping` are the general ones of :mod:`prunekit.estimators.blocks` and
:mod:`prunekit.graph.blocks`, which score residual blocks of any model):

- ``angular``: ``1 - cos(x_in, x_out)`` of a block's input and output hidden states, averaged over
  every calibration token, in [0, 2]. A block whose output points where its input did changes
  little and can go. This is the Block Influence of ShortGPT (Men et al. 2024) and the one-block
  case of the angular distance of Gromov et al. 2024, "The Unreasonable Ineffectiveness of the
  Deeper Layers". Computed layer by layer on the dense model (one block's activations in memory).
- ``perplexity``: the rise of the mean negative log-likelihood of the calibration windows when
  the block is skipped (its output replaced by its input), one full forward pass per block; a
  causal LM is needed.

:func:`remove_blocks` is the surgery: it rebuilds the model's block list without the removed
blocks, renumbers the per-block cache indices (``layer_idx``) that Hugging Face attention layers
use to address the KV cache, and shrinks the config (``num_hidden_layers``, ``layer_types``), so
``generate`` with a cache and ``save_pretrained`` / ``from_pretrained`` keep working.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.errors import ConfigError, UnsupportedLayerError
from prunekit.estimators.blocks import angular_distances
from prunekit.graph.blocks import skipping
from prunekit.llm.blocks import (
    BlockStack,
    _forward_options,
    capture_block_inputs,
    find_blocks,
    run_block,
)
from prunekit.llm.perplexity import logits_of
from prunekit.masks import clone_model
from prunekit.measure.inputs import eval_mode
from prunekit.registry import Registry

LAYER_INDEX_ATTRS: tuple[str, ...] = ("layer_idx",)
"""Attributes of a block's submodules holding the block's own index (used to address the KV
cache); :func:`remove_blocks` renumbers them."""

PER_LAYER_CONFIG_LISTS: tuple[str, ...] = ("layer_types",)
"""Config fields with one entry per block; :func:`remove_blocks` drops the removed entries."""


def angular_scores(
    model: nn.Module,
    windows: Tensor,
    *,
    blocks: str | None = None,
    progress: bool = False,
) -> list[float]:
    """``1 - cos(block input, block output)`` of every block, averaged over all tokens."""
    stack = find_blocks(model, blocks)
    scores: list[float] = []
    with eval_mode(model), torch.no_grad():
        inputs = capture_block_inputs(model, stack, windows)
        bar = tqdm(range(len(stack)), desc="angular", unit="block", disable=not progress)
        for index in bar:
            total, count = 0.0, 0
            for j, out in enumerate(run_block(stack.blocks[index], inputs)):
                distances = angular_distances(inputs.hidden[j : j + 1], out, "token")
                total += float(distances.sum())
                count += distances.numel()
                inputs.hidden[j : j + 1] = out
            scores.append(total / count)
    return scores


def mean_nll(model: nn.Module, windows: Tensor) -> float:
    """Mean next-token negative log-likelihood (nats) of a causal LM over ``[n, seq]`` windows."""
    options = _forward_options(model)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for row in windows:
            ids = row[None].to(device)
            logits = logits_of(model(ids, **options))[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return total / count


def perplexity_scores(
    model: nn.Module,
    windows: Tensor,
    *,
    blocks: str | None = None,
    progress: bool = False,
) -> list[float]:
    """Rise of the mean NLL on ``windows`` when each block alone is skipped."""
    stack = find_blocks(model, blocks)
    dense = mean_nll(model, windows)
    scores = []
    for index in tqdm(range(len(stack)), desc="skip-nll", unit="block", disable=not progress):
        with skipping(stack.blocks[index]):
            scores.append(mean_nll(model, windows) - dense)
    return scores


BlockScorer = Callable[..., list[float]]

BLOCK_SCORES: Registry[BlockScorer] = Registry(
    "block score", {"angular": angular_scores, "perplexity": perplexity_scores}
)
"""Ways to score whole blocks: name -> ``f(model, windows, *, blocks, progress) -> scores``."""


def score_blocks(
    model: nn.Module,
    windows: Tensor,
    metric: str = "angular",
    *,
    blocks: str | None = None,
    progress: bool = False,
) -> list[float]:
    """One score per block (higher means keep) by the registered ``metric``."""
    return BLOCK_SCORES.get(metric)(model, windows, blocks=blocks, progress=progress)


def check_remove_count(k: int, n_blocks: int) -> int:
    """``k`` if ``0 <= k < n_blocks`` (at least one block must stay), else a ConfigError."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_blocks:
        raise ConfigError(
            f"k (the number of blocks to remove) must be an integer in [0, {n_blocks}) for a "
            f"model with {n_blocks} blocks, got {k!r}"
        )
    return k


def lowest_blocks(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` lowest scores, ascending (ties: the later block goes first)."""
    check_remove_count(k, len(scores))
    order = sorted(range(len(scores)), key=lambda i: (scores[i], -i))
    return sorted(order[:k])


def _shrink_config(config: Any, keep: Sequence[int], n_blocks: int) -> None:
    heterogeneous = config.to_dict().get("per_layer_config") if hasattr(config, "to_dict") else None
    if heterogeneous:
        raise UnsupportedLayerError(
            f"{type(config).__name__} has per-layer overrides (per_layer_config); removing "
            "blocks from a heterogeneous config is not supported"
        )
    config.num_hidden_layers = len(keep)
    for attr in PER_LAYER_CONFIG_LISTS:
        values = getattr(config, attr, None)
        if isinstance(values, (list, tuple)) and len(values) == n_blocks:
            setattr(config, attr, [values[i] for i in keep])


def remove_blocks(
    model: nn.Module,
    indices: Sequence[int],
    *,
    blocks: str | None = None,
    inplace: bool = False,
) -> nn.Module:
    """``model`` without the blocks at ``indices`` (a copy unless ``inplace``).

    The block list is replaced by a shorter ``nn.ModuleList``; submodules' ``layer_idx`` are
    renumbered to the new positions and ``config.num_hidden_layers`` / ``config.layer_types``
    shrink, so KV caches, ``generate`` and ``save_pretrained`` see a consistent model.
    """
    target = model if inplace else clone_model(model)
    stack = find_blocks(target, blocks)
    n_blocks = len(stack)
    drop = sorted(set(indices))
    if len(drop) != len(indices):
        raise ConfigError(f"block indices to remove repeat: {list(indices)}")
    bad = [i for i in drop if not 0 <= i < n_blocks]
    if bad:
        raise ConfigError(f"block index {bad[0]} is out of range for {n_blocks} blocks")
    check_remove_count(len(drop), n_blocks)
    keep = [i for i in range(n_blocks) if i not in drop]
    _rebuild(target, stack, keep)
    config = getattr(target, "config", None)
    if config is not None:
        _shrink_config(config, keep, n_blocks)
    return target


def _rebuild(model: nn.Module, stack: BlockStack, keep: Sequence[int]) -> None:
    parent_path, _, attr = stack.prefix.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    kept = nn.ModuleList([stack.blocks[i] for i in keep])
    for new_index, block in enumerate(kept):
        for module in block.modules():
            for name in LAYER_INDEX_ATTRS:
                if isinstance(getattr(module, name, None), int):
                    setattr(module, name, new_index)
    setattr(parent, attr, kept)


@dataclass(frozen=True)
class DepthPruneResult:
    """The shorter model, every block's score (original numbering), the removed block indices,
    and the wall time of scoring and surgery."""

    model: nn.Module
    metric: str
    scores: list[float]
    removed: list[int]
    seconds: float


def prune_depth(
    model: nn.Module,
    windows: Tensor,
    k: int,
    *,
    metric: str = "angular",
    blocks: str | None = None,
    inplace: bool = False,
    progress: bool = False,
) -> DepthPruneResult:
    """Score every block on calibration ``windows`` and remove the ``k`` lowest-scoring ones."""
    check_remove_count(k, len(find_blocks(model, blocks)))
    start = time.perf_counter()
    scores = score_blocks(model, windows, metric, blocks=blocks, progress=progress)
    removed = lowest_blocks(scores, k)
    pruned = remove_blocks(model, removed, blocks=blocks, inplace=inplace)
    return DepthPruneResult(pruned, metric, scores, removed, time.perf_counter() - start)
