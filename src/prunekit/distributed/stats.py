"""Sum layer input statistics over processes.

Wanda scores a weight by ``|W_ij| * ||X_j||_2`` and SparseGPT solves with ``H = 2 X^T X / rows``
(see :mod:`prunekit.estimators.stats`). Both are sums over the calibration rows: the squared
column norms, the Gram matrix ``X^T X`` and the row count. When every process has run the
calibration forward on its own share of the windows, one all-reduce (sum) of those three sums
gives every process the statistics of all windows, as if one process had seen them all.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from prunekit.distributed.process import rank_device
from prunekit.estimators.stats import InputStats


def _all_reduce_flat(tensors: list[Tensor]) -> list[Tensor]:
    """Sum each tensor over the ranks with one collective call (they share a dtype)."""
    if not tensors:
        return []
    device = rank_device()
    flat = torch.cat([t.reshape(-1) for t in tensors]).to(device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.cpu()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(t.shape))
        start += t.numel()
    return out


def all_reduce_stats(stats: Mapping[str, InputStats]) -> None:
    """Replace every rank's ``stats`` by their sum over all ranks, in place.

    Every rank must hold the same layer names with the same shapes (the same block of the same
    model); layers are reduced in sorted name order so the collectives line up.
    """
    names = sorted(stats)
    counts = torch.tensor([float(stats[n].rows) for n in names], dtype=torch.float64)
    norms = [stats[n].sq_norms for n in names]
    reduced64 = _all_reduce_flat([counts, *norms])
    for i, name in enumerate(names):
        stats[name].rows = int(reduced64[0][i])
        stats[name].sq_norms = reduced64[i + 1].clone()
    with_gram = [n for n in names if stats[n].gram is not None]
    grams = _all_reduce_flat([stats[n].gram for n in with_gram])  # type: ignore[misc]
    for name, gram in zip(with_gram, grams, strict=True):
        stats[name].gram = gram.clone()
