"""Split a block's per-layer solves over the processes and exchange the decisions.

Once a block's input statistics are summed over the ranks (:mod:`prunekit.distributed.stats`),
every layer of the block can be solved on its own. :class:`SplitSolver` (a
:data:`prunekit.llm.sequential.LayerSolver`) gives each layer to one rank, balanced by an
estimate of its cost (:func:`layer_cost`: SparseGPT inverts the ``in x in`` Hessian, then runs
the OBS updates over ``out x in`` weights; Frantar & Alistarh 2023), every rank solves only its
own layers, and each owner broadcasts its decisions (keep mask and, for SparseGPT, the updated
weight) to the others. The owner solves from the same summed statistics every rank holds, so the
decisions are bitwise those every rank would have taken alone, and every rank ends with the same
model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from prunekit.distributed.process import rank_device
from prunekit.errors import ConfigError
from prunekit.llm.methods import LayerPrune

_DTYPES: tuple[torch.dtype, ...] = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)
"""Dtypes a decision's tensors may have; a tensor travels as raw bytes plus its index here."""


def layer_cost(weight: Tensor, *, hessian: bool) -> float:
    """Estimated solve cost of the layer with ``weight`` (``[out, in]``), in multiply-adds.

    With a Hessian (SparseGPT): Cholesky factorisations and inverse of ``in x in`` (about
    ``4/3 in^3``) plus the OBS column updates (``out * in^2``). Without (Wanda, magnitude): the
    per-row sort, ``out * in * log2(in)``."""
    out, inp = int(weight.shape[0]), int(weight.shape[-1])
    if hessian:
        return 4.0 / 3.0 * inp**3 + out * inp**2
    return out * inp * math.log2(max(inp, 2))


def assign_layers(costs: Mapping[str, float], world_size: int) -> dict[str, int]:
    """Owner rank of every layer: longest-processing-time first (Graham 1969), each layer, most
    costly first (name order on ties), to the rank with the least cost so far (lowest rank on
    ties). Deterministic, so every rank computes the same assignment."""
    if world_size < 1:
        raise ConfigError(f"assign_layers: world_size must be at least 1, got {world_size}")
    load = [0.0] * world_size
    owner: dict[str, int] = {}
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[name] = rank
        load[rank] += costs[name]
    return owner


def _dtype_code(tensor: Tensor, layer: str) -> int:
    if tensor.dtype not in _DTYPES:
        raise ConfigError(
            f"layer {layer!r}: a decision tensor of dtype {tensor.dtype} cannot be exchanged "
            f"between ranks (supported: {', '.join(str(d) for d in _DTYPES)})"
        )
    return _DTYPES.index(tensor.dtype)


def _broadcast_bytes(
    tensor: Tensor | None, shape: torch.Size, dtype: torch.dtype, src: int
) -> Tensor:
    """``tensor`` of rank ``src`` on every rank, sent as raw bytes (any dtype, Gloo or NCCL)."""
    device = rank_device()
    if tensor is not None:
        buffer = tensor.detach().contiguous().reshape(-1).view(torch.uint8).to(device)
    else:
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        buffer = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=src)
    return buffer.view(dtype).reshape(shape)


def _exchange(name: str, decision: LayerPrune | None, weight: Tensor, src: int) -> LayerPrune:
    """Rank ``src``'s decision for layer ``name`` on every rank."""
    header = torch.full((2,), -1, dtype=torch.int64, device=rank_device())
    if decision is not None:
        for tensor in (decision.keep, decision.weight):
            if tensor is not None and tensor.shape != weight.shape:
                raise ConfigError(
                    f"layer {name!r}: a decision of shape {tuple(tensor.shape)} for a weight of "
                    f"shape {tuple(weight.shape)} cannot be exchanged between ranks"
                )
        header[0] = _dtype_code(decision.keep, name)
        if decision.weight is not None:
            header[1] = _dtype_code(decision.weight, name)
    dist.broadcast(header, src=src)
    keep_code, weight_code = (int(v) for v in header.cpu())
    keep = _broadcast_bytes(
        None if decision is None else decision.keep, weight.shape, _DTYPES[keep_code], src
    )
    new = None
    if weight_code >= 0:
        sent = None if decision is None else decision.weight
        new = _broadcast_bytes(sent, weight.shape, _DTYPES[weight_code], src)
    if decision is not None:  # the owner keeps its own tensors
        return decision
    return LayerPrune(keep.to(weight.device), None if new is None else new.to(weight.device))


class SplitSolver:
    """A :data:`prunekit.llm.sequential.LayerSolver` that solves each layer on one rank.

    ``hessian`` says which cost model balances the layers (:func:`layer_cost`). Call it on every
    rank of the default process group with the same layers in the same order.
    """

    def __init__(self, *, hessian: bool) -> None:
        self.hessian = hessian

    def __call__(
        self, weights: Mapping[str, Tensor], solve: Callable[[str], LayerPrune]
    ) -> dict[str, LayerPrune]:
        rank, world = dist.get_rank(), dist.get_world_size()
        costs = {name: layer_cost(w, hessian=self.hessian) for name, w in weights.items()}
        owner = assign_layers(costs, world)
        mine = {name: solve(name) for name in weights if owner[name] == rank}
        if world == 1:
            return mine
        return {
            name: _exchange(name, mine.get(name), weight, owner[name])
            for name, weight in weights.items()
        }
