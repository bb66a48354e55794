"""A whole set of named tensors in the per-tensor encodings, as safetensors entries.

A tensor that some sparse encoding stores in fewer bytes (:func:`~prunekit.formats.encodings.
encode`) becomes parts named ``<name>.<part>`` (``fc1.weight.bitmask``, ``fc1.weight.compressed``,
...: the naming of compressed-tensors' ``sparse-bitmask`` format) and an :class:`Entry` that says
how to decode them; every other tensor is stored dense under its own name. Both save paths use
this: :func:`prunekit.io.save` (the entries go to ``prunekit.json``) and
:func:`prunekit.sparse.save_compressed` (the entries go to the file's metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt
from torch import Tensor

from prunekit.errors import SaveFileError
from prunekit.formats.decoding import decode
from prunekit.formats.encodings import BITMASK, BSR, CSR, DENSE, encode

PARTS: Mapping[str, tuple[str, ...]] = {
    BITMASK: ("bitmask", "compressed", "row_offsets", "shape"),
    CSR: ("crow_indices", "col_indices", "compressed", "shape"),
    BSR: ("crow_indices", "col_indices", "compressed", "shape"),
}
"""The parts of each sparse encoding, stored as ``<name>.<part>``."""


class Entry(BaseModel):
    """How one tensor is encoded: its format, shape, dtype and, for ``sparse-bsr``, tiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["sparse-bitmask", "sparse-csr", "sparse-bsr"]
    shape: tuple[NonNegativeInt, ...]
    dtype: str
    blocksize: tuple[PositiveInt, PositiveInt] | None = None

    def keys(self, name: str) -> list[str]:
        """The safetensors keys of this tensor's parts."""
        return [f"{name}.{part}" for part in PARTS[self.format]]


def dtype_of(name: str, where: str) -> torch.dtype:
    """The torch dtype called ``name`` (``"float32"``), or a SaveFileError naming ``where``."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise SaveFileError(f"{where}: unknown dtype {name!r}")
    return dtype


def encode_tensors(
    tensors: Mapping[str, Tensor], *, sparse: bool = True
) -> tuple[dict[str, Tensor], dict[str, Entry]]:
    """The safetensors entries for ``tensors`` (CPU, contiguous, no two sharing memory) and the
    :class:`Entry` of each one stored sparse.

    A tensor stays dense when that is smallest, when ``sparse`` is false, or when one of its
    part names is the name of another tensor (the names must stay unambiguous).
    """
    taken = set(tensors)
    stored: dict[str, Tensor] = {}
    entries: dict[str, Entry] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        enc = encode(tensor) if sparse else None
        clash = enc is not None and bool(taken & {f"{name}.{p}" for p in enc.parts})
        if enc is not None and enc.format != DENSE and not clash:
            stored.update({f"{name}.{part}": value for part, value in enc.parts.items()})
            dtype = str(tensor.dtype).removeprefix("torch.")
            entries[name] = Entry(
                format=enc.format,
                shape=tuple(tensor.shape),
                dtype=dtype,
                blocksize=enc.blocksize,
            )
            continue
        data = tensor.detach().to("cpu").contiguous()
        if data.numel() and data.untyped_storage().data_ptr() in storages:
            data = data.clone()  # a partial overlap with an earlier tensor
        if data.numel():
            storages.add(data.untyped_storage().data_ptr())
        stored[name] = data
    return stored, entries


def decode_tensors(
    stored: Mapping[str, Tensor], entries: Mapping[str, Entry], where: str
) -> dict[str, Tensor]:
    """The tensors that :func:`encode_tensors` turned into ``stored`` and ``entries``; ``where``
    names the file in errors. Stored keys that are no part of an entry pass through."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for name, entry in entries.items():
        keys = dict(zip(PARTS[entry.format], entry.keys(name), strict=True))
        parts = {part: stored[key] for part, key in keys.items() if key in stored}
        used.update(keys.values())
        label = f"{where}: tensor {name!r}"
        dtype = dtype_of(entry.dtype, label)
        out[name] = decode(entry.format, parts, tuple(entry.shape), dtype, entry.blocksize, label)
    out.update({key: value for key, value in stored.items() if key not in used})
    return out
