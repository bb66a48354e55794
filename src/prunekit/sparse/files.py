"""Compressed safetensors files: sparse tensors stored as bitmask, CSR or block-CSR, exactly.

``save_compressed(model_or_state_dict, path)`` writes one safetensors file. A tensor that some
sparse encoding stores in fewer bytes (:mod:`prunekit.formats.tables`) is written as parts
named ``<name>.<part>`` (``fc1.weight.bitmask``, ``fc1.weight.compressed``, ...: the naming of
compressed-tensors' ``sparse-bitmask`` format); every other tensor is written dense under its
own name. The file's ``__metadata__`` holds (all values are strings, as safetensors requires):

``"prunekit"``
    ``"prunekit-compressed-v1"``, the format's name and version.
``"compression"``
    JSON ``{"tensors": {name: {"format", "shape", "dtype", "blocksize"?}}, "aliases": {name:
    first}}``: the encoded tensors (dense ones are not listed) and the names that share another
    name's tensor (tied weights are stored once and come back as one tensor object).
``"data_sha256"``
    SHA-256 of the bytes after the header, so a damaged file is refused, not misread.

The file is written beside ``path`` and renamed into place (a crash leaves the old file or the
new one). :func:`load_compressed` gives back the state dict: dense tensors bit for bit, sparse
ones bit for bit except that ``-0.0`` zeros come back as ``+0.0``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from prunekit.errors import ConfigError, SaveFileError
from prunekit.formats.tables import Entry, encode_tensors
from prunekit.io.atomic import fsync_directory, fsync_file, staged
from prunekit.measure.effective import effective_state_dict

COMPRESSED_FORMAT = "prunekit-compressed-v1"


class Schema(BaseModel):
    """The ``compression`` metadata of a file: encoded tensors by name, and aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tensors: dict[str, Entry]
    aliases: dict[str, str]


def _state(source: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(source, nn.Module):
        return effective_state_dict(source)
    if not isinstance(source, Mapping):
        raise ConfigError(
            f"save_compressed needs an nn.Module or a state dict, got {type(source).__name__}"
        )
    for name, value in source.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            raise ConfigError(
                f"state dict entry {name!r} is a {type(value).__name__}; only str -> Tensor "
                "entries can be saved"
            )
    return dict(source)


def _alias_key(tensor: Tensor) -> tuple[object, ...] | None:
    if tensor.numel() == 0 or tensor.device.type == "meta":
        return None
    storage = tensor.untyped_storage().data_ptr()
    return (
        str(tensor.device),
        storage,
        tensor.storage_offset(),
        tensor.shape,
        tensor.stride(),
        tensor.dtype,
    )


def _split_aliases(tensors: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors to store (each view once) and ``{alias: first name}`` for the others."""
    first: dict[tuple[object, ...], str] = {}
    distinct: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in tensors.items():
        if tensor.device.type == "meta":
            raise ConfigError(f"tensor {name!r} is on the meta device and has no values to save")
        if tensor.layout != torch.strided:
            raise ConfigError(
                f"tensor {name!r} has layout {tensor.layout}; save the model before sparsify(), "
                "or undo it with prunekit.sparse.densify(model)"
            )
        key = _alias_key(tensor)
        if key is not None and key in first:
            aliases[name] = first[key]
            continue
        if key is not None:
            first[key] = name
        distinct[name] = tensor
    return distinct, aliases


def _with_checksum(blob: bytes) -> tuple[bytes, memoryview]:
    """The blob's header with ``data_sha256`` added to its metadata, and its data bytes."""
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    data = memoryview(blob)[8 + length :]
    header["__metadata__"]["data_sha256"] = hashlib.sha256(data).hexdigest()
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, data


def save_compressed(source: nn.Module | Mapping[str, Tensor], path: str | Path) -> Path:
    """Write ``source``'s tensors (a model's masked, effective state, or a state dict) to the
    safetensors file ``path``, each in its smallest encoding; return the path.

    See the module docstring for the layout. A model is read through its masks (as if baked);
    the model is not changed.
    """
    target = Path(path)
    if target.is_dir():
        raise SaveFileError(f"{target}: is a directory; save_compressed writes one file")
    tensors, aliases = _split_aliases(_state(source))
    stored, entries = encode_tensors(tensors)
    compression = Schema(tensors=entries, aliases=aliases).model_dump_json(exclude_none=True)
    metadata = {"format": "pt", "prunekit": COMPRESSED_FORMAT, "compression": compression}
    header, data = _with_checksum(safetensors.torch.save(stored, metadata=metadata))
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged(target) as temp:
        with temp.open("wb") as handle:
            handle.write(header)
            handle.write(data)
        fsync_file(temp)
        os.replace(temp, target)
    fsync_directory(target.parent)
    return target
