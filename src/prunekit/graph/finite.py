"""Checks on data before anything runs on it: every floating tensor finite, no empty batch.

NaN or infinite inputs make every activation statistic NaN and every gradient-based score NaN
or equal, so estimators would rank units by nothing; an empty batch gives no evidence at all.
Both are refused up front with where they are: the batch, the place inside it and the element.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from prunekit.errors import DataError


def tensor_leaves(tree: Any, path: str = "") -> Iterator[tuple[str, Tensor]]:
    """``(path, tensor)`` for every tensor in nested tuples, lists and mappings, in order;
    the path reads like indexing (``[0]``, ``['input_ids']``)."""
    if isinstance(tree, Tensor):
        yield path, tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from tensor_leaves(value, f"{path}[{key!r}]")
    elif isinstance(tree, (tuple, list)):
        for i, value in enumerate(tree):
            yield from tensor_leaves(value, f"{path}[{i}]")


def check_finite(tree: Any, what: str) -> None:
    """Raise :class:`~prunekit.errors.DataError` if a floating tensor of ``tree`` holds NaN or
    an infinity, naming ``what`` (e.g. ``"scoring batch 3"``), the place and the element."""
    for path, t in tensor_leaves(tree):
        if not (t.is_floating_point() or t.is_complex()) or t.device.type == "meta":
            continue
        bad = ~torch.isfinite(t)
        if not bool(bad.any()):
            continue
        index = tuple(int(i) for i in bad.nonzero()[0]) if t.dim() else ()
        value = t[index] if index else t
        kind = "NaN" if bool(torch.isnan(value)) else ("-inf" if float(value.real) < 0 else "inf")
        place = f" in {path}" if path else ""
        raise DataError(
            f"{what} holds {kind}{place} at position {index} (shape {tuple(t.shape)}, "
            f"{int(bad.sum())} non-finite value(s)); clean or drop it before pruning"
        )


def check_not_empty(tree: Any, what: str) -> None:
    """Raise :class:`~prunekit.errors.DataError` if the first tensor of ``tree`` (a batch's
    inputs) has no samples."""
    for path, t in tensor_leaves(tree):
        if t.numel() == 0:
            place = f" ({path} has shape {tuple(t.shape)})" if path else ""
            raise DataError(f"{what} is empty{place}: it has no samples to score with")
        return
