"""Run a function in ``N`` local processes joined in one process group, and collect its results.

:func:`run_processes` is ``torchrun`` for tests, benchmarks and notebooks: it spawns ``N`` fresh
Python processes (``torch.multiprocessing.spawn``), joins them through a rendezvous file
(``init_method="file://..."``, so no port has to be free), sets each process to
``threads`` intra-op threads, calls ``fn(*args)`` on every rank and returns the ranks' return
values in rank order. ``fn`` and ``args`` are pickled to reach the children, so ``fn`` must be
importable by name (a module-level function) and ``args`` plain data.

The results come back without unpickling anything: each child checks that its return value is
plain data (:func:`check_plain`: tensors, numbers, strings, ``None``, dtypes, devices, sizes, in
lists, tuples and dicts with string or integer keys) and writes it with ``torch.save``, and the
parent reads it with ``torch.load(weights_only=True)``, PyTorch's restricted unpickler that
builds only those types.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from prunekit.distributed.process import Backend, default_backend
from prunekit.errors import ConfigError

_LEAVES = (torch.Tensor, bool, int, float, str, type(None), torch.dtype, torch.device, torch.Size)


def check_plain(value: Any, where: str = "result") -> None:
    """Raise ConfigError naming the first part of ``value`` that is not plain data (see the
    module docstring), which ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, _LEAVES):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise ConfigError(
                    f"{where} has a key of type {type(key).__name__}; results sent back by "
                    "run_processes use str or int keys"
                )
            check_plain(item, f"{where}[{key!r}]")
        return
    raise ConfigError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; run_processes sends "
        "back only tensors, numbers, strings, None, dtypes, devices and sizes in lists, tuples "
        "and dicts (return e.g. a state_dict instead of a model)"
    )


def _worker(
    rank: int,
    world_size: int,
    backend: Backend,
    folder: str,
    threads: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend,
        init_method=f"file://{Path(folder) / 'rendezvous'}",
        rank=rank,
        world_size=world_size,
    )
    try:
        result = fn(*args)
        check_plain(result, f"the return value of {getattr(fn, '__name__', fn)!r} on rank {rank}")
        torch.save(result, Path(folder) / f"result-{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_processes(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    threads: int = 1,
    backend: Backend | None = None,
) -> list[Any]:
    """``[fn(*args) on rank 0, ..., on rank world_size - 1]``, each in its own process.

    A rank that raises makes this raise (``torch.multiprocessing.ProcessRaisedException`` with
    the child's traceback).
    """
    if world_size < 1 or threads < 1:
        raise ConfigError(
            f"run_processes needs world_size >= 1 and threads >= 1, got {world_size}, {threads}"
        )
    backend = backend or default_backend()
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise ConfigError(
            f"run_processes: {world_size} NCCL ranks need {world_size} GPUs, "
            f"found {torch.cuda.device_count()}"
        )
    with tempfile.TemporaryDirectory(prefix="prunekit-dist-") as folder:
        mp.spawn(
            _worker,
            args=(world_size, backend, folder, threads, fn, args),
            nprocs=world_size,
            join=True,
        )
        return [
            torch.load(Path(folder) / f"result-{r}.pt", weights_only=True)
            for r in range(world_size)
        ]
