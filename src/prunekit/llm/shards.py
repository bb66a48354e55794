"""Sharded safetensors checkpoints, read one tensor at a time and written one shard at a time.

A Hugging Face model directory holds either ``model.safetensors`` or shards listed by
``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``).
:class:`ShardedCheckpoint` checks the index and every shard's header up front (a missing shard,
a truncated one — ``safe_open`` requires the header to cover the file exactly — or a corrupt one
is a one-line error before anything runs), then reads tensors by name, opening each shard only
for the call: ``safe_open`` memory-maps the file, so an open handle would keep the pages it
touched resident. :func:`write_shard` writes one shard atomically (a temporary file renamed into
place) and :func:`write_index` writes the index at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from prunekit.errors import DataError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor is stored and what it looks like, from the shard's header only."""

    shard: str
    shape: tuple[int, ...]
    dtype: str


def _read_index(directory: Path) -> dict[str, str]:
    index_path = directory / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(
                f"shard index {str(index_path)!r} is not valid JSON with a weight_map"
            ) from err
        if not isinstance(weight_map, dict) or not weight_map:
            raise DataError(f"shard index {str(index_path)!r} has an empty weight_map")
        return {str(k): str(v) for k, v in weight_map.items()}
    single = directory / SINGLE_FILE
    if single.is_file():
        with _open(single) as handle:
            return {name: SINGLE_FILE for name in handle.keys()}  # noqa: SIM118 (not a dict)
    raise DataError(
        f"model directory {str(directory)!r} has neither {INDEX_FILE} nor {SINGLE_FILE}; "
        "streaming needs safetensors weights (save the model with save_pretrained)"
    )


def _open(path: Path):  # type: ignore[no-untyped-def]
    """``safe_open`` with a prunekit error for a missing or unreadable shard."""
    if not path.is_file():
        raise DataError(f"shard {str(path)!r} listed in the index does not exist")
    try:
        return safe_open(str(path), framework="pt")
    except Exception as err:  # safetensors raises its own SafetensorError / OSError
        raise DataError(f"shard {str(path)!r} is not a readable safetensors file: {err}") from None


class ShardedCheckpoint:
    """The tensors of a safetensors model directory, validated and read lazily by name."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataError(f"model directory {str(self.directory)!r} does not exist")
        weight_map = _read_index(self.directory)
        self.info: dict[str, TensorInfo] = {}
        for shard in sorted(set(weight_map.values())):
            path = self.directory / shard
            expected = {name for name, s in weight_map.items() if s == shard}
            with _open(path) as handle:
                present = set(handle.keys())
                missing = sorted(expected - present)
                if missing:
                    raise DataError(
                        f"shard {str(path)!r} lacks tensor {missing[0]!r} that the index "
                        f"places there ({len(missing)} missing)"
                    )
                for name in sorted(expected):
                    piece = handle.get_slice(name)
                    shape = tuple(int(d) for d in piece.get_shape())
                    self.info[name] = TensorInfo(shard, shape, str(piece.get_dtype()))

    def names(self) -> list[str]:
        return sorted(self.info)

    def __contains__(self, name: object) -> bool:
        return name in self.info

    def load(self, names: Iterable[str], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """The named tensors (copies, in their stored dtype or converted to ``dtype``)."""
        wanted = list(names)
        unknown = [n for n in wanted if n not in self.info]
        if unknown:
            raise DataError(f"checkpoint {str(self.directory)!r} has no tensor {unknown[0]!r}")
        by_shard: dict[str, list[str]] = {}
        for name in wanted:
            by_shard.setdefault(self.info[name].shard, []).append(name)
        out: dict[str, Tensor] = {}
        for shard, members in by_shard.items():
            with _open(self.directory / shard) as handle:
                for name in members:
                    tensor = handle.get_tensor(name)
                    converted = tensor if dtype is None else tensor.to(dtype)
                    out[name] = converted.clone() if converted is tensor else converted
        return out

    def nbytes(self, name: str) -> int:
        """Bytes of tensor ``name`` as stored."""
        info = self.info[name]
        count = 1
        for d in info.shape:
            count *= d
        return count * _itemsize(info.dtype)

    def torch_dtype(self, name: str) -> torch.dtype:
        """The torch dtype tensor ``name`` is stored in."""
        stored = self.info[name].dtype
        if stored not in _TORCH_DTYPES:
            raise DataError(f"tensor {name!r} has dtype {stored}, which prunekit cannot prune")
        return _TORCH_DTYPES[stored]

    def fingerprint(self) -> str:
        """A hash of every tensor's name, shard, shape and dtype and every shard's size."""
        digest = hashlib.sha256()
        for name in self.names():
            info = self.info[name]
            digest.update(f"{name}|{info.shard}|{info.shape}|{info.dtype}\n".encode())
        for shard in sorted({i.shard for i in self.info.values()}):
            digest.update(f"{shard}:{(self.directory / shard).stat().st_size}\n".encode())
        return digest.hexdigest()


def atomic_replace(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``final`` (all or nothing)."""
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_shard(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Write ``tensors`` to ``path`` as one safetensors file, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    atomic_replace(tmp, path)


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path``, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_replace(tmp, path)


def write_index(directory: Path, weight_map: Mapping[str, str]) -> None:
    """The ``model.safetensors.index.json`` of the shards written in ``directory``."""
    total = 0
    for shard in sorted(set(weight_map.values())):
        with _open(directory / shard) as handle:
            for name in handle.keys():  # noqa: SIM118 (not a dict)
                piece = handle.get_slice(name)
                count = 1
                for d in piece.get_shape():
                    count *= int(d)
                total += count * _itemsize(str(piece.get_dtype()))
    data = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    write_json(directory / INDEX_FILE, data)


_TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ITEMSIZE = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2}


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE.get(dtype, 1)
