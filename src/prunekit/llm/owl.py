"""Outlier-weighted layerwise sparsity (OWL; Yin et al. 2024, "Outlier Weighed Layerwise Sparsity
(OWL): A Missing Secret Sauce for Pruning LLMs to High Sparsity").

Blocks holding more *outliers* — weights whose Wanda score ``|W_ij| * ||X_j||_2`` exceeds ``M``
times the mean score of the block — are pruned less. With ``D_l`` the outlier ratio of block
``l`` (all its Linears together, scored on the dense model), the sparsity of every Linear in the
block is

    S_l = S - lambda * (D_l - mean(D)) / max_l |D_l - mean(D)|

so the mean over blocks is exactly the target ``S`` and every ``S_l`` lies in
``[S - lambda, S + lambda]``, the range the paper states. (The reference code scales ``D`` to
``[0, 2 lambda]`` and re-centres it, which keeps the mean but can leave that range.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.errors import ConfigError, DataError, check_sparsity
from prunekit.llm.blocks import advance, capture_block_inputs, find_blocks, run_block
from prunekit.llm.stats import record_inputs
from prunekit.measure.inputs import eval_mode


def outlier_ratio(scores: Sequence[Tensor], threshold: float) -> float:
    """Fraction of all entries of ``scores`` above ``threshold`` times their mean."""
    flat = torch.cat([s.detach().flatten().float() for s in scores])
    if flat.numel() == 0:
        raise DataError("outlier ratio of an empty set of scores")
    return float((flat > threshold * flat.mean()).float().mean())


def check_owl(target: float, lam: float, threshold: float) -> None:
    """Refuse a lambda that would push some layer's sparsity out of [0, 1), or a bad ``M``."""
    check_sparsity(target)
    if not lam >= 0 or not target - lam >= 0.0 or not target + lam < 1.0:
        raise ConfigError(
            f"owl_lambda must keep [sparsity - lambda, sparsity + lambda] inside [0, 1): "
            f"got owl_lambda={lam!r} with sparsity {target!r}"
        )
    if not threshold > 0:
        raise ConfigError(f"owl_threshold (M) must be > 0, got {threshold!r}")


def owl_sparsities(ratios: Sequence[float], target: float, lam: float) -> list[float]:
    """Per-block sparsity from outlier ratios (module docstring): more outliers, lower sparsity."""
    check_owl(target, lam, 1.0)
    if len(ratios) == 0:
        raise DataError("OWL needs the outlier ratio of at least one block")
    d = torch.tensor(ratios, dtype=torch.float64)
    centred = d - d.mean()
    spread = float(centred.abs().max())
    if spread == 0.0:
        return [target] * len(ratios)
    sparsity = target - lam * centred / spread
    sparsity += target - sparsity.mean()  # float rounding: the mean is the target exactly
    return [float(s) for s in sparsity.clamp(target - lam, target + lam)]


def block_outlier_ratios(
    model: nn.Module,
    windows: Tensor,
    *,
    threshold: float = 5.0,
    blocks: str | None = None,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    progress: bool = False,
) -> list[float]:
    """The outlier ratio of the Wanda scores of every block, on the dense model, layer by layer."""
    stack = find_blocks(model, blocks)
    ratios: list[float] = []
    with eval_mode(model), torch.no_grad():
        inputs = capture_block_inputs(model, stack, windows)
        for index in tqdm(range(len(stack)), desc="owl", unit="block", disable=not progress):
            layers = stack.linears(index, include, exclude)
            with record_inputs({name: module for name, module, _ in layers}) as stats:
                for _ in run_block(stack.blocks[index], inputs):
                    pass
            scores = [
                getattr(module, rule.weight).detach().abs().float()
                * stats[name].column_norms()[None]
                for name, module, rule in layers
            ]
            if not scores:
                raise ConfigError(f"block {stack.name(index)!r} has no Linear layer to score")
            ratios.append(outlier_ratio(scores, threshold))
            if index + 1 < len(stack):
                advance(stack.blocks[index], inputs)
    return ratios


def owl_layer_sparsity(
    model: nn.Module,
    windows: Tensor,
    *,
    sparsity: float,
    lam: float = 0.08,
    threshold: float = 5.0,
    blocks: str | None = None,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    progress: bool = False,
) -> dict[str, float]:
    """OWL sparsity of every selected Linear (fully qualified name -> sparsity)."""
    check_owl(sparsity, lam, threshold)
    ratios = block_outlier_ratios(
        model,
        windows,
        threshold=threshold,
        blocks=blocks,
        include=include,
        exclude=exclude,
        progress=progress,
    )
    per_block = owl_sparsities(ratios, sparsity, lam)
    stack = find_blocks(model, blocks)
    return {
        name: per_block[index]
        for index in range(len(stack))
        for name, _, _ in stack.linears(index, include, exclude)
    }
