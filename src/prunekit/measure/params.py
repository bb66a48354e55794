"""Parameter counts, nonzeros and per-layer sparsity of a (possibly masked) model.

Counts are taken on the effective tensors (see :mod:`prunekit.measure.effective`): a masked weight
counts once, under its plain name, with its masked entries as zeros. A tensor shared between
modules (tied embeddings) counts once. Buffers (BatchNorm statistics, masks) are not parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.measure.effective import effective_parameters
from prunekit.ops.rules import LayerRule, prunable_layers


@dataclass(frozen=True)
class LayerStats:
    """Size and sparsity of one prunable layer's weight.

    Attributes:
        params: number of entries of the weight.
        nonzeros: entries that are not zero (after masking).
        sparsity: fraction of zero entries, ``1 - nonzeros / params`` (0 for an empty weight).
    """

    params: int
    nonzeros: int
    sparsity: float

    @classmethod
    def of(cls, weight: Tensor) -> LayerStats:
        """The stats of one (effective) weight tensor."""
        params = weight.numel()
        nonzeros = int(torch.count_nonzero(weight).item())
        return cls(params, nonzeros, sparsity_of(params, nonzeros))


def sparsity_of(params: int, nonzeros: int) -> float:
    """``1 - nonzeros / params``, and 0 for nothing at all."""
    return 1.0 - nonzeros / params if params else 0.0


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module, LayerRule]]:
    """The model's prunable layers, without the "not pruned" warning meant for pruning runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="layers with parameters but no pruning rule")
        return list(prunable_layers(model))


def count_params(model: nn.Module) -> int:
    """Number of parameters, each shared tensor once, masked weights once (not original + mask)."""
    return sum(t.numel() for t in effective_parameters(model).values())


def count_nonzeros(model: nn.Module) -> int:
    """Number of parameter entries that are not zero, with masks applied."""
    return sum(int(torch.count_nonzero(t).item()) for t in effective_parameters(model).values())


def layer_sparsity(model: nn.Module) -> dict[str, LayerStats]:
    """Layer name -> stats of its (effective) weight, for every prunable layer.

    Only the weight named by the layer's rule is counted (the tensor that pruning targets), not its
    bias. Layers appear in module order; a layer shared under several names appears once.
    """
    with torch.no_grad():
        return {
            name: LayerStats.of(getattr(module, rule.weight))
            for name, module, rule in measured_layers(model)
        }
