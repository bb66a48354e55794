"""The ``prunekit.json`` file: what a save directory holds and how to rebuild its model.

The JSON is parsed with pydantic models (strict shapes, no unknown fields) and handed out as the
frozen :class:`SaveMetadata`. Nothing here touches tensors; :mod:`prunekit.io.loading` checks the
weights file against the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError

from prunekit.errors import ConfigError, SaveFileError
from prunekit.formats import BITMASK, BSR, CSR, DENSE, PARTS, Entry
from prunekit.io.atomic import readable
from prunekit.io.locking import locked

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

_DTYPES: Mapping[str, torch.dtype] = MappingProxyType(
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
    if name not in _DTYPES:
        raise ConfigError(f"dtype {name} cannot be saved; supported: {', '.join(_DTYPES)}")
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TensorModel(_Strict):
    shape: list[NonNegativeInt]
    dtype: Literal[tuple(_DTYPES)]  # type: ignore[valid-type]
    key: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    encoding: Literal[ENCODINGS] = DENSE  # type: ignore[valid-type]
    blocksize: tuple[PositiveInt, PositiveInt] | None = None


class _WeightsModel(_Strict):
    file: Literal["model.safetensors"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ArchSpec(BaseModel):  # type: ignore[no-redef]  # pydantic plugin vs a field named kwargs
    """How to rebuild an architecture: a registered model name and its keyword arguments.

    Unknown fields are kept, so later builders (torchvision, timm, ...) can add their own.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    model: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class _FileModel(_Strict):
    format: Literal["prunekit.saved-model"]
    format_version: Literal[1, 2, 3]
    prunekit_version: str
    weights: _WeightsModel
    masked: list[str]
    tensors: dict[str, _TensorModel]
    masks: dict[str, _TensorModel] = Field(default_factory=dict)
    originals: dict[str, _TensorModel] = Field(default_factory=dict)
    arch: ArchSpec | None = None
    plan: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


def _info(model: _TensorModel) -> TensorInfo:
    return TensorInfo(
        tuple(model.shape), model.dtype, model.key, model.sha256, model.encoding, model.blocksize
    )


def _infos(models: Mapping[str, _TensorModel]) -> Mapping[str, TensorInfo]:
    return MappingProxyType({name: _info(m) for name, m in models.items()})


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _load_json(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise SaveFileError(f"{file}: file not found (is this a prunekit save directory?)") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SaveFileError(f"{file}: cannot be read: {err}") from err
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as err:
        raise SaveFileError(f"{file}: not valid JSON: {err}") from err


def _check_version(data: Any, file: Path) -> None:
    if not isinstance(data, dict):
        raise SaveFileError(f"{file}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT_NAME:
        raise SaveFileError(
            f"{file}: 'format' is {data.get('format')!r}, expected {FORMAT_NAME!r}; "
            "this is not a file written by prunekit.io.save"
        )
    version = data.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        hint = (
            "; it was written by a newer prunekit, upgrade to read it"
            if isinstance(version, int) and version > FORMAT_VERSION
            else ""
        )
        raise SaveFileError(
            f"{file}: unsupported format_version {version!r} (this prunekit reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}){hint}"
        )


def _describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        parts.append(f"{where}: {item['msg']}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _check_encodings(meta: SaveMetadata, file: Path) -> None:
    records = [*meta.tensors.items(), *meta.masks.items(), *meta.originals.items()]
    encoded = sorted({name for name, info in records if info.encoding != DENSE})
    if meta.format_version < 3 and encoded:
        raise SaveFileError(
            f"{file}: format_version {meta.format_version} stores every tensor dense, but "
            f"{', '.join(encoded[:5])} name an encoding"
        )
    for name, info in records:
        implied = info.encoding == IMPLIED
        if implied and (meta.masks.get(name) is not info or info.dtype != "bool"):
            raise SaveFileError(f"{file}: only a bool mask can be implied, not {name!r}")
        if info.encoding == PACKED and info.dtype != "bool":
            raise SaveFileError(f"{file}: {name!r}: only bool tensors are stored as packed bits")
        if implied and info.key != MASK_PREFIX + name:
            raise SaveFileError(f"{file}: the implied mask of {name!r} has key {info.key!r}")
        if (info.encoding == BSR) != (info.blocksize is not None):
            raise SaveFileError(f"{file}: {name!r}: a blocksize goes with sparse-bsr only")
        if info.encoding in (BITMASK, CSR, BSR) and not info.dtype.startswith(("float", "bfloat")):
            raise SaveFileError(f"{file}: {name!r}: {info.encoding} stores floating point only")


def _check_consistent(meta: SaveMetadata, file: Path) -> None:
    _check_encodings(meta, file)
    if meta.format_version >= 2:
        records = [*meta.tensors.items(), *meta.masks.items(), *meta.originals.items()]
        if unsigned := sorted({name for name, info in records if info.sha256 is None}):
            raise SaveFileError(f"{file}: no sha256 recorded for {', '.join(unsigned[:5])}")
    for name, info in meta.masks.items():
        if name not in meta.tensors:
            raise SaveFileError(f"{file}: mask for {name!r}, which is not a saved tensor")
        if info.shape != meta.tensors[name].shape:
            raise SaveFileError(
                f"{file}: mask for {name!r} has shape {info.shape}, the tensor "
                f"{meta.tensors[name].shape}"
            )
    for name, info in meta.originals.items():
        if name not in meta.masks:
            raise SaveFileError(f"{file}: original values for {name!r}, which is not masked")
        tensor = meta.tensors[name]
        if (info.shape, info.dtype) != (tensor.shape, tensor.dtype):
            raise SaveFileError(f"{file}: original values for {name!r} differ in shape or dtype")


def parse_metadata(data: Any, file: Path) -> SaveMetadata:
    """Validate the decoded JSON of ``file`` and turn it into :class:`SaveMetadata`."""
    _check_version(data, file)
    try:
        parsed = _FileModel.model_validate(data)
    except ValidationError as err:
        raise SaveFileError(f"{file}: invalid metadata: {_describe(err)}") from err
    if parsed.masked != list(parsed.masks):
        raise SaveFileError(f"{file}: 'masked' does not list the names in 'masks'")
    meta = SaveMetadata(
        format_version=parsed.format_version,
        prunekit_version=parsed.prunekit_version,
        sha256=parsed.weights.sha256,
        tensors=_infos(parsed.tensors),
        masks=_infos(parsed.masks),
        originals=_infos(parsed.originals),
        arch=None if parsed.arch is None else parsed.arch.model_dump(),
        plan=parsed.plan,
        extra=parsed.extra,
    )
    _check_consistent(meta, file)
    return meta


def save_directory(path: str | Path) -> Path:
    """``path`` as an existing save directory, or a :class:`SaveFileError` saying what it is.

    Where a save was killed while switching directories (the directory is missing and the
    previous save lies beside it), the previous save is read.
    """
    directory = readable(Path(path))
    if not directory.exists():
        raise SaveFileError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise SaveFileError(
            f"{directory}: is a file; pass the directory that prunekit.io.save wrote "
            f"(it holds {METADATA_FILE} and {WEIGHTS_FILE})"
        )
    return directory


def read_metadata(path: str | Path) -> SaveMetadata:
    """Read and validate ``prunekit.json`` of the save directory ``path``; loads no tensors.

    Waits while a save to ``path`` is under way (see :mod:`prunekit.io.locking`).
    """
    with locked(Path(path), shared=True):
        return read_metadata_unlocked(path)


def read_metadata_unlocked(path: str | Path) -> SaveMetadata:
    """:func:`read_metadata` for a caller that already holds the save lock."""
    file = save_directory(path) / METADATA_FILE
    return parse_metadata(_load_json(file), file)


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
        raise ConfigError(f"invalid arch: {_describe(err)}") from err
