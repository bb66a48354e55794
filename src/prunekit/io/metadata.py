"""The ``prunekit.json`` file: what a save directory holds and how to rebuild its model.

Its records (:class:`TensorInfo`, the frozen :class:`SaveMetadata`) and the format's names;
:mod:`prunekit.io.metadata_read` parses and checks the file into them. Nothing here touches
tensors; :mod:`prunekit.io.loading` checks the weights file against the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prunekit.errors import ConfigError
from prunekit.formats import BITMASK, BSR, CSR, DENSE, PARTS, Entry

FORMAT_NAME = "prunekit.saved-model"
FORMAT_VERSION = 3
"""Version written. Version 3 stores sparse tensors compressed and leaves out masks that their
tensor's zeros imply; versions 1 (no per-tensor digests) and 2 (every tensor dense) are still
read."""
READABLE_VERSIONS = (1, 2, 3)
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "prunekit.json"
MASK_PREFIX = "__mask__/"
"""Key prefix of masks in the weights file; tensor names never contain ``/``."""
ORIGINAL_PREFIX = "__original__/"
"""Key prefix of the unmasked values of masked tensors, stored only when they are needed."""
IMPLIED = "implied"
"""The encoding of a mask that is not stored: it is ``tensor != 0`` of its (effective) tensor."""
PACKED = "packed-bits"
"""The encoding of a stored bool mask: 8 entries a byte, rows of its 2-D view packed LSB first."""
ENCODINGS = (DENSE, BITMASK, CSR, BSR, IMPLIED, PACKED)

DTYPES: Mapping[str, torch.dtype] = MappingProxyType(
    {
        str(dtype).removeprefix("torch."): dtype
        for dtype in (
            torch.float64,
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.float8_e4m3fn,
            torch.float8_e5m2,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
        )
    }
)


def dtype_name(dtype: torch.dtype) -> str:
    """The name under which ``dtype`` is written to ``prunekit.json`` (e.g. ``"float32"``)."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ConfigError(f"dtype {name} cannot be saved; supported: {', '.join(DTYPES)}")
    return name


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of one saved tensor, the key that holds its values in the weights file
    and the digest that binds those values to the tensor's name (:mod:`prunekit.io.digests`).

    Tensors that shared memory in the model are stored once; every name then points at one key.
    ``encoding`` says how the key's values are stored (:mod:`prunekit.formats`): ``"dense"``
    under the key itself, a sparse encoding as the parts ``<key>.<part>`` (``blocksize`` gives
    the tiles of ``"sparse-bsr"``), or, for a mask, ``"implied"``: not stored at all, it is
    ``tensor != 0``; a stored bool mask is ``"packed-bits"`` (8 entries a byte).
    """

    shape: tuple[int, ...]
    dtype: str
    key: str
    sha256: str | None = None
    encoding: str = DENSE
    blocksize: tuple[int, int] | None = None

    def file_keys(self) -> list[str]:
        """The weights-file keys that hold this record's values."""
        if self.encoding == IMPLIED:
            return []
        if self.encoding in (DENSE, PACKED):
            return [self.key]
        return [f"{self.key}.{part}" for part in PARTS[self.encoding]]

    def entry(self) -> Entry | None:
        """How to decode a sparse record's parts (``None`` for a dense or implied one)."""
        if self.encoding in (DENSE, IMPLIED, PACKED):
            return None
        return Entry.model_validate(
            {
                "format": self.encoding,
                "shape": self.shape,
                "dtype": self.dtype,
                "blocksize": self.blocksize,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": list(self.shape), "dtype": self.dtype, "key": self.key}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.encoding != DENSE:
            out["encoding"] = self.encoding
        if self.blocksize is not None:
            out["blocksize"] = list(self.blocksize)
        return out


@dataclass(frozen=True)
class SaveMetadata:
    """The parsed content of ``prunekit.json``.

    Attributes:
        format_version: version of the save format (see ``FORMAT_VERSION``).
        prunekit_version: version of prunekit that wrote the files.
        sha256: hex digest of ``model.safetensors``.
        tensors: every tensor of the model's state by its plain name (``"fc1.weight"``), with the
            effective (masked) value's shape and dtype.
        masks: the masked tensors' masks, by tensor name.
        originals: unmasked values of masked tensors, by tensor name, where they were kept.
        arch: how to rebuild the architecture, e.g. ``{"model": "lenet-5", "kwargs": {}}``.
        plan: the structural pruning plan that turns the architecture into the saved shapes.
        extra: free user metadata.
    """

    format_version: int
    prunekit_version: str
    sha256: str
    tensors: Mapping[str, TensorInfo]
    masks: Mapping[str, TensorInfo]
    originals: Mapping[str, TensorInfo]
    arch: Mapping[str, Any] | None = None
    plan: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] | None = None

    @property
    def masked(self) -> tuple[str, ...]:
        """Names of the masked tensors."""
        return tuple(self.masks)

    def file_keys(self) -> set[str]:
        """Every key the weights file must hold."""
        infos = [*self.tensors.values(), *self.masks.values(), *self.originals.values()]
        return {key for info in infos for key in info.file_keys()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "prunekit_version": self.prunekit_version,
            "weights": {"file": WEIGHTS_FILE, "sha256": self.sha256},
            "masked": list(self.masks),
            "tensors": {name: info.to_dict() for name, info in self.tensors.items()},
            "masks": {name: info.to_dict() for name, info in self.masks.items()},
            "originals": {name: info.to_dict() for name, info in self.originals.items()},
            "arch": _plain(self.arch),
            "plan": _plain(self.plan),
            "extra": _plain(self.extra),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


class ArchSpec(BaseModel):  # type: ignore[no-redef]  # pydantic plugin vs a field named kwargs
    """How to rebuild an architecture: a registered model name and its keyword arguments.

    Unknown fields are kept, so later builders (torchvision, timm, ...) can add their own.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    model: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)


def to_json_object(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    """A JSON-safe deep copy of ``value`` (a mapping with string keys), or a ConfigError."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON-serialisable: {err}") from err
    assert isinstance(copied, dict)
    return copied


def check_arch(arch: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate an ``arch`` mapping (``{"model": name, "kwargs": {...}}``) before saving it."""
    plain = to_json_object(arch, "arch")
    if plain is None:
        return None
    try:
        return ArchSpec.model_validate(plain).model_dump()
    except ValidationError as err:
        raise ConfigError(f"invalid arch: {validation_message(err)}") from err


def validation_message(err: ValidationError) -> str:
    """The first five errors of ``err`` as ``field.path: message``; the count of the rest."""
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        parts.append(f"{where}: {item['msg']}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
