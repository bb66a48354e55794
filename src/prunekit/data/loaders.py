"""Data loaders with reproducible shuffling and an optional sample limit for fast runs."""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from prunekit.errors import ConfigError


def make_loader(
    dataset: Dataset[Any],
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int = 0,
    limit: int | None = None,
    *,
    drop_last: bool = False,
) -> DataLoader[Any]:
    """A ``DataLoader`` over ``dataset`` whose shuffle order is fixed by ``seed``.

    ``limit`` keeps only the first ``limit`` samples (all of them if the data set is smaller),
    so tests and CI runs can use a slice of a real data set. The loader owns its own random
    generator: it never reads or advances the global torch RNG, and each pass over it gives a
    new order that is the same from run to run.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None:
        dataset = take_first(dataset, limit)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last
    )


def take_first(dataset: Dataset[Any], limit: int) -> Dataset[Any]:
    """The first ``limit`` samples of ``dataset``; a ``TensorDataset`` is sliced without copying."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[:limit] for tensor in dataset.tensors))
    if not isinstance(dataset, Sized):
        raise ConfigError(
            f"limit needs a data set with a length; {type(dataset).__name__} has no __len__"
        )
    return Subset(dataset, range(min(limit, len(dataset))))
