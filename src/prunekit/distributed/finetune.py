"""Data-parallel fine-tuning of a (pruned) model: DistributedDataParallel over a process group.

Every rank holds a replica of the model and takes ``batch_size / world_size`` samples of each
global batch through a :class:`~torch.utils.data.distributed.DistributedSampler` (rank ``r``
takes positions ``r, r + world, ...`` of one shared, seeded permutation, so the ranks' shares of
step ``k`` together are exactly the global batch ``k`` of a one-process run). DDP averages the
gradients over the ranks; for a loss that is a mean over the batch and equal shares this is the
gradient of the whole global batch, so the ranks take the same step one process would take on
the global batch (Goyal et al. 2017, "Accurate, Large Minibatch SGD"). The last incomplete global
batch of an epoch is dropped, which keeps the shares equal.

Masks (:mod:`prunekit.masks`) travel with the model: the forward pass sees ``original * mask``,
and after every step the originals are zeroed where the mask is 0, so removing the masks later
cannot bring pruned weights back. Rank 0 writes the checkpoint atomically
(:func:`prunekit.recovery.save_checkpoint`) while the others wait at a barrier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from prunekit.core.modes import module_mode
from prunekit.core.outputs import cross_entropy
from prunekit.distributed.process import rank_device, require_group
from prunekit.errors import ConfigError, DataError
from prunekit.masks import Mask
from prunekit.recovery.checkpoint import save_checkpoint
from prunekit.train import LossFn, make_optimizer
from prunekit.train.loop import batches_on, train_step


@dataclass(frozen=True)
class DDPConfig:
    """One data-parallel fine-tuning run.

    Attributes:
        batch_size: the *global* batch, split evenly over the ranks (a multiple of the world size).
        epochs / max_steps: passes over the data, or fewer steps if ``max_steps`` comes first.
        optimizer, lr, momentum, weight_decay: as in :func:`prunekit.train.make_optimizer`.
        shuffle / seed: one seeded permutation per epoch, the same on every rank.
        save_path: where rank 0 writes ``{"model": state_dict, "steps": ..., "losses": ...}``.
    """

    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None
    optimizer: str = "sgd"
    lr: float = 1e-2
    momentum: float = 0.0
    weight_decay: float = 0.0
    shuffle: bool = True
    seed: int = 0
    save_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DDPConfig.{name} must be a positive integer, got {value!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"DDPConfig.max_steps must be positive, got {self.max_steps!r}")


@dataclass(frozen=True)
class DDPResult:
    """The fine-tuned model (the rank's replica, unwrapped), the steps taken, the loss of each
    step over the whole global batch, the world size and the wall time."""

    model: nn.Module
    steps: int
    losses: tuple[float, ...]
    world_size: int
    seconds: float


def zero_masked_originals(model: nn.Module) -> None:
    """Set the stored (original) values of every masked tensor to 0 where its mask is 0."""
    with torch.no_grad():
        for module in model.modules():
            if not parametrize.is_parametrized(module):
                continue
            for chain in module.parametrizations.values():  # type: ignore[operator]
                for step in chain:
                    if isinstance(step, Mask):
                        chain.original.masked_fill_(step.mask == 0, 0)


def _loader(dataset: Dataset[Any], config: DDPConfig, rank: int, world: int) -> DataLoader[Any]:
    if config.batch_size % world:
        raise ConfigError(
            f"DDPConfig.batch_size={config.batch_size} must be a multiple of the world size "
            f"{world} (each rank takes an equal share of every global batch)"
        )
    n = len(dataset)  # type: ignore[arg-type]
    if n < config.batch_size:
        raise DataError(
            f"finetune_ddp: the data set has {n} samples, fewer than one global batch of "
            f"{config.batch_size}"
        )
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, world, rank, shuffle=config.shuffle, seed=config.seed, drop_last=True
    )
    return DataLoader(
        dataset, batch_size=config.batch_size // world, sampler=sampler, drop_last=True
    )


def _global_losses(local: list[float], world: int) -> tuple[float, ...]:
    """Each step's loss averaged over the ranks (= over the global batch, for equal shares)."""
    losses = torch.tensor(local, dtype=torch.float64, device=rank_device())
    dist.all_reduce(losses, op=dist.ReduceOp.SUM)
    return tuple((losses / world).tolist())


def finetune_ddp(
    model: nn.Module,
    dataset: Dataset[Any],
    config: DDPConfig | None = None,
    *,
    loss_fn: LossFn = cross_entropy,
) -> DDPResult:
    """Fine-tune ``model`` in place on every rank of the current process group.

    Call it on every rank with an identical model (same initial weights and masks) and the
    same map-style ``dataset`` of ``(input, target)`` pairs. ``loss_fn`` must average over the
    batch. The replicas stay identical; the returned model is this rank's replica on its device
    (the rank's GPU under NCCL).
    """
    config = config or DDPConfig()
    rank, world = require_group("finetune_ddp")
    device = rank_device()
    loader = _loader(dataset, config, rank, world)
    model.to(device)
    zero_masked_originals(model)
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    optimizer = make_optimizer(
        config.optimizer,
        model,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
    )
    local: list[float] = []
    start = time.perf_counter()
    with module_mode(model, training=True):
        for epoch in range(config.epochs):
            loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            for inputs, targets in batches_on(loader, device):
                _, loss = train_step(ddp, optimizer, loss_fn, inputs, targets)
                zero_masked_originals(model)
                local.append(loss)
                if config.max_steps is not None and len(local) >= config.max_steps:
                    break
            if config.max_steps is not None and len(local) >= config.max_steps:
                break
    losses = _global_losses(local, world)
    seconds = time.perf_counter() - start
    if config.save_path is not None:
        if rank == 0:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            save_checkpoint(
                Path(config.save_path),
                {"model": state, "steps": len(local), "losses": list(losses), "world_size": world},
            )
        dist.barrier()
    return DDPResult(model, len(local), losses, world, seconds)
