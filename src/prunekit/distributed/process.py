"""Process groups: which backend, which device, which share of the data belongs to a rank.

prunekit's multi-process functions run inside an initialised :mod:`torch.distributed` process
group, started either by ``torchrun`` (:func:`init_from_env`) or by :func:`run_processes`
(:mod:`prunekit.distributed.launch`). Gloo is used on CPU and NCCL on CUDA.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.distributed as dist

from prunekit.errors import ConfigError

Backend = Literal["gloo", "nccl"]


def default_backend() -> Backend:
    """NCCL when CUDA is available, Gloo otherwise."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def require_group(what: str) -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; a clear error if there is none."""
    if not dist.is_available() or not dist.is_initialized():
        raise ConfigError(
            f"{what} runs inside a torch.distributed process group: start it with torchrun "
            "and call prunekit.distributed.init_from_env(), or use run_processes(...)"
        )
    return dist.get_rank(), dist.get_world_size()


def init_from_env(backend: Backend | None = None) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT`` in the environment); return ``(rank, world_size)``.

    Does nothing but report when the group is already initialised. Under NCCL the process is
    bound to the GPU ``LOCAL_RANK``.
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise ConfigError(
            f"init_from_env: the environment lacks {', '.join(missing)}; start the script "
            "with torchrun --nproc_per_node=N"
        )
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def rank_device() -> torch.device:
    """The device this rank computes on: its GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous share of ``n`` items that belongs to ``rank``: the first ``n % world``
    ranks get one item more (``shard_range(5, 0, 2) == range(0, 3)``)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in a world of size {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
