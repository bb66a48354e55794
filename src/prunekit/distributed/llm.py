"""Layer-by-layer LLM pruning (Wanda, SparseGPT) with the calibration split over processes.

Every rank holds the whole model and the same calibration windows, and runs
:func:`prunekit.llm.prune_llm` on its own contiguous share of the windows
(:func:`~prunekit.distributed.process.shard_range`): block inputs, the block forward passes and
the per-layer input statistics cost ``1 / world_size`` of the single-process run. Before a
block's layers are solved, the statistics are summed over the ranks
(:func:`~prunekit.distributed.stats.all_reduce_stats`, hooked in through ``prune_llm``'s
``reduce``), so every layer is solved from the statistics of *all* windows (float64 sums, whose
order does not show after the cast to float32). The block's layers are then split over the ranks
(:class:`~prunekit.distributed.solve.SplitSolver`, balanced by solve cost): each rank solves its
own layers and broadcasts their keep masks and new weights, so every rank ends with the same
model. With ``split_solves=False`` every rank repeats every solve instead (no weights sent).
"""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.distributed.process import require_group, shard_range
from prunekit.distributed.solve import SplitSolver
from prunekit.distributed.stats import all_reduce_stats
from prunekit.errors import ConfigError, DataError
from prunekit.llm.sequential import LLMPruneConfig, LLMPruneResult, prune_llm


def prune_llm_distributed(
    model: nn.Module,
    calibration: Tensor | None,
    config: LLMPruneConfig,
    *,
    inplace: bool = False,
    progress: bool = False,
    split_solves: bool = True,
) -> LLMPruneResult:
    """:func:`prunekit.llm.prune_llm` with the calibration windows split over the process group.

    Call it on every rank with the same model and the same ``[n, seq_len]`` windows (``n`` at
    least the world size). ``progress`` shows the bar on rank 0 only. The result is the same on
    every rank. ``split_solves`` shares each block's per-layer solves out over the ranks (the
    default); without it every rank solves every layer.
    """
    rank, world = require_group("prune_llm_distributed")
    if config.allocation == "owl":
        raise ConfigError(
            "prune_llm_distributed: allocation='owl' scores outliers on each rank's own windows; "
            "compute the layer sparsities first (prunekit.llm.owl_layer_sparsity) and pass them "
            "as layer_sparsity"
        )
    if calibration is None:
        return prune_llm(model, None, config, inplace=inplace, progress=progress and rank == 0)
    if calibration.dim() != 2 or calibration.shape[0] < world:
        raise DataError(
            f"prune_llm_distributed: calibration must be [n, seq_len] windows with n >= "
            f"{world} (one per rank), got shape {tuple(calibration.shape)}"
        )
    share = shard_range(int(calibration.shape[0]), rank, world)
    return prune_llm(
        model,
        calibration[share.start : share.stop],
        config,
        inplace=inplace,
        progress=progress and rank == 0,
        reduce=all_reduce_stats,
        solver=SplitSolver(hessian=config.build_method().needs_hessian) if split_solves else None,
    )
