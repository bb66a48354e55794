"""Fine-tune the model a search chose, data-parallel over local processes.

The chosen allocation is pruned by surgery (:meth:`SearchResult.prune_config` replayed by
:func:`prunekit.prune`), then fine-tuned with
:func:`~prunekit.distributed.finetune_ddp` on ``processes`` ranks started by
:func:`~prunekit.distributed.run_processes` (Gloo on CPU, NCCL with a GPU per rank): each rank
takes an equal share of every global batch and DDP averages the gradients, so the ranks take
the step one process would take on the global batch (Goyal et al. 2017). Rank 0's weights are
loaded back into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from prunekit.distributed import DDPConfig, finetune_ddp, run_processes
from prunekit.errors import ConfigError


@dataclass(frozen=True)
class ChosenFinetune:
    """What the fine-tune did: optimizer steps, the loss of each step over the global batch,
    the number of processes and the seconds rank 0 spent training."""

    steps: int
    losses: tuple[float, ...]
    processes: int
    seconds: float


def _rank(model: nn.Module, dataset: Dataset[Any], config: DDPConfig) -> dict[str, Any] | None:
    """One rank's fine-tune; rank 0 returns the weights and the record."""
    done = finetune_ddp(model, dataset, config)
    if dist.get_rank() != 0:
        return None
    state = {k: v.detach().cpu() for k, v in done.model.state_dict().items()}
    return {"state": state, "steps": done.steps, "losses": done.losses, "seconds": done.seconds}


def finetune_chosen(
    model: nn.Module,
    dataset: Dataset[Any],
    config: DDPConfig,
    *,
    processes: int = 1,
    threads: int = 1,
) -> ChosenFinetune:
    """Fine-tune ``model`` (in place) on ``dataset`` with DDP over ``processes`` local ranks of
    ``threads`` threads each; ``config.batch_size`` is the global batch."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"search finetune: processes must be an integer >= 1, got {processes!r}")
    outputs = run_processes(_rank, processes, model, dataset, config, threads=threads)
    first = outputs[0]
    model.load_state_dict(first["state"])
    return ChosenFinetune(first["steps"], tuple(first["losses"]), processes, first["seconds"])


def ddp_config(spec: Any, batch_size: int, samples: int, seed: int) -> DDPConfig:
    """A :class:`DDPConfig` from a recipe's ``finetune:`` section (epochs, max_steps,
    optimizer, lr, weight_decay); ``max_steps`` without epochs runs as many epochs as needed."""
    if getattr(spec, "distill", None) is not None:
        raise ConfigError(
            "search finetune: distill is not supported when fine-tuning the chosen model over "
            "processes; remove finetune.distill"
        )
    epochs = int(spec.epochs)
    if spec.max_steps is not None and epochs == 0:
        per_epoch = max(samples // batch_size, 1)
        epochs = -(-int(spec.max_steps) // per_epoch)
    return DDPConfig(
        batch_size=batch_size, epochs=max(epochs, 1), max_steps=spec.max_steps,
        optimizer=spec.optimizer, lr=spec.lr, weight_decay=spec.weight_decay, seed=seed,
    )  # fmt: skip
