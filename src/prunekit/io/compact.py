"""How a save stores its tensors since format version 3: sparse ones compressed, masks implied.

A pruned model is mostly zeros, and its 0/1 masks mostly repeat where those zeros are. So:

- every floating-point tensor is stored in the smallest of the encodings of
  :mod:`prunekit.formats` (dense, bitmask + values, CSR, block CSR), as the parts
  ``<key>.<part>`` of the weights file when it is not dense;
- a 0/1 mask that equals ``tensor != 0`` of its own effective tensor is not stored at all
  (encoding ``"implied"``); a mask that differs (a kept weight that is exactly zero) is stored
  as packed bits, 8 entries a byte (encoding ``"packed-bits"``).

Loading decodes the parts and recomputes implied masks before any check runs, so digests,
shapes and dtypes are checked on the values the model receives. Sparse encodings compare zero
by value: a ``-0.0`` (masking a negative weight by multiplication makes one) comes back as
``+0.0``; every other bit comes back as saved, and the per-tensor digests are those of the
values as loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from prunekit.errors import SaveFileError
from prunekit.formats import Entry, decode_tensors, encode_tensors
from prunekit.formats.bits import matrix_shape, pack_rows, unpack_rows
from prunekit.io.metadata import IMPLIED, PACKED, SaveMetadata


def implied_masks(tensors: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> set[str]:
    """Names whose mask is ``bool`` and equal to ``tensor != 0`` of the effective tensor."""
    return {
        name
        for name, mask in masks.items()
        if mask.dtype == torch.bool and torch.equal(mask, tensors[name] != 0)
    }


def _positive_zeros(tensor: Tensor) -> Tensor:
    """``tensor`` with every zero as ``+0.0``: what a sparse encoding gives back."""
    return tensor.masked_fill(tensor == 0, 0) if tensor.is_floating_point() else tensor


def pack_bool(mask: Tensor) -> Tensor:
    """A bool tensor's 2-D view packed 8 entries a byte (``formats.bits.pack_rows``)."""
    return pack_rows(mask.detach().cpu().reshape(matrix_shape(tuple(mask.shape))))


def _unpack_bool(packed: Tensor, shape: tuple[int, ...], where: str) -> Tensor:
    rows, cols = matrix_shape(shape)
    want = (rows, (cols + 7) // 8)
    if packed.dtype != torch.uint8 or tuple(packed.shape) != want:
        raise SaveFileError(
            f"{where}: packed bits are {packed.dtype} {tuple(packed.shape)}, "
            f"expected torch.uint8 {want}"
        )
    return unpack_rows(packed, cols).reshape(shape)


def compact(
    written: Mapping[str, Tensor], dropped: set[str], packed: set[str]
) -> tuple[dict[str, Tensor], dict[str, Entry], dict[str, Tensor]]:
    """The weights-file entries for ``written`` (by key) without the keys in ``dropped`` and
    with the bool tensors in ``packed`` packed, the :class:`~prunekit.formats.Entry` of each key
    stored sparse, and the values every key of ``written`` loads back as (for the digests)."""
    kept = {k: v for k, v in written.items() if k not in dropped and k not in packed}
    stored, entries = encode_tensors(kept)
    stored.update({k: pack_bool(written[k]) for k in packed})
    values = {k: _positive_zeros(v) if k in entries else v for k, v in written.items()}
    return stored, entries, values


def expand(file: Path, meta: SaveMetadata, stored: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The values of every record's key: dense entries as read, sparse parts decoded (checked,
    errors name ``file``) and implied masks recomputed from their tensors."""
    entries: dict[str, Entry] = {}
    for info in (*meta.tensors.values(), *meta.masks.values(), *meta.originals.values()):
        entry = info.entry()
        if entry is not None:
            entries[info.key] = entry
    values = decode_tensors(stored, entries, str(file))
    for name, info in meta.masks.items():
        if info.encoding == IMPLIED:
            values[info.key] = values[meta.tensors[name].key] != 0
        elif info.encoding == PACKED:
            where = f"{file}: mask of {name!r}"
            values[info.key] = _unpack_bool(stored[info.key], info.shape, where)
    return values
