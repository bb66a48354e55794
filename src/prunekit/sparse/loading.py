"""Reading the compressed safetensors files of :mod:`prunekit.sparse.files`, with checks.

A file is refused, with a :class:`~prunekit.errors.SaveFileError` naming it, when it is missing,
not a safetensors file, not a prunekit compressed file, damaged (the data checksum differs),
inconsistent (a part that does not fit its tensor's shape) or, when ``like`` is given, when its
tensors' names or shapes differ from the model's.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
from pydantic import ValidationError
from torch import Tensor, nn

from prunekit.errors import SaveFileError
from prunekit.formats.tables import decode_tensors
from prunekit.measure.effective import effective_state_dict
from prunekit.sparse.files import COMPRESSED_FORMAT, Schema


def _header(blob: bytes, where: str) -> tuple[dict[str, str], memoryview]:
    """The ``__metadata__`` of a safetensors blob and the bytes after its header."""
    try:
        (length,) = struct.unpack("<Q", blob[:8])
        if length > len(blob) - 8:
            raise ValueError(f"header length {length} exceeds the file")
        header = json.loads(blob[8 : 8 + length])
    except (struct.error, ValueError) as err:
        raise SaveFileError(f"{where}: not a safetensors file ({err})") from err
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("prunekit") != COMPRESSED_FORMAT:
        found = metadata.get("prunekit") if isinstance(metadata, dict) else None
        raise SaveFileError(
            f"{where}: not a {COMPRESSED_FORMAT} file (its metadata names {found!r}); "
            "plain safetensors files load with safetensors.torch.load_file"
        )
    return metadata, memoryview(blob)[8 + length :]


def read_schema(path: str | Path) -> Schema:
    """The ``compression`` metadata of a compressed file (which tensors are stored how)."""
    where = str(path)
    blob = _read(Path(path))
    metadata, _ = _header(blob, where)
    return _schema(metadata, where)


def _schema(metadata: Mapping[str, str], where: str) -> Schema:
    try:
        return Schema.model_validate_json(metadata.get("compression", ""))
    except ValidationError as err:
        first = err.errors()[0]
        place = ".".join(str(p) for p in first["loc"])
        raise SaveFileError(
            f"{where}: bad compression metadata at {place!r}: {first['msg']}"
        ) from err


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise SaveFileError(f"{path}: no such file")
    return path.read_bytes()


def _decode_all(stored: Mapping[str, Tensor], schema: Schema, where: str) -> dict[str, Tensor]:
    out = decode_tensors(stored, schema.tensors, where)
    for alias, first in schema.aliases.items():
        if first not in out:
            raise SaveFileError(f"{where}: {alias!r} is an alias of {first!r}, which is missing")
        out[alias] = out[first]
    return out


def _check_like(
    loaded: Mapping[str, Tensor], like: nn.Module | Mapping[str, Tensor], where: str
) -> None:
    expected = effective_state_dict(like) if isinstance(like, nn.Module) else like
    missing = sorted(set(expected) - set(loaded))
    extra = sorted(set(loaded) - set(expected))
    if missing or extra:
        raise SaveFileError(
            f"{where}: tensor names differ from the model's: missing {missing[:3]}, "
            f"unexpected {extra[:3]}"
        )
    for name, tensor in expected.items():
        if tuple(loaded[name].shape) != tuple(tensor.shape):
            raise SaveFileError(
                f"{where}: tensor {name!r} has shape {tuple(loaded[name].shape)} in the file, "
                f"{tuple(tensor.shape)} in the model"
            )


def load_compressed(
    path: str | Path, *, like: nn.Module | Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """The state dict saved by :func:`~prunekit.sparse.save_compressed` at ``path``.

    With ``like`` (a model, read through its masks, or a state dict), the names and shapes must
    match it. Load the result into a model without masks with ``model.load_state_dict``.
    """
    where = str(path)
    blob = _read(Path(path))
    metadata, data = _header(blob, where)
    if hashlib.sha256(data).hexdigest() != metadata.get("data_sha256"):
        raise SaveFileError(f"{where}: the data checksum does not match; the file is damaged")
    schema = _schema(metadata, where)
    try:
        stored = safetensors.torch.load(blob)
    except Exception as err:  # safetensors raises its own SafetensorError
        raise SaveFileError(f"{where}: unreadable safetensors data ({err})") from err
    loaded = _decode_all(stored, schema, where)
    if like is not None:
        _check_like(loaded, like, where)
    return loaded
