"""Reading ``prunekit.json``: the file parsed with strict pydantic models (no unknown fields,
every shape and digest checked) and checked for consistency (masks of saved tensors, encodings
the format version allows) into the frozen :class:`~prunekit.io.metadata.SaveMetadata`. Any
problem is a :class:`~prunekit.errors.SaveFileError` naming the file and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError

from prunekit.errors import SaveFileError
from prunekit.formats import BITMASK, BSR, CSR, DENSE
from prunekit.io.atomic import readable
from prunekit.io.locking import locked
from prunekit.io.metadata import (
    DTYPES,
    ENCODINGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    IMPLIED,
    MASK_PREFIX,
    METADATA_FILE,
    PACKED,
    READABLE_VERSIONS,
    WEIGHTS_FILE,
    ArchSpec,
    SaveMetadata,
    TensorInfo,
    validation_message,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TensorModel(_Strict):
    shape: list[NonNegativeInt]
    dtype: Literal[tuple(DTYPES)]  # type: ignore[valid-type]
    key: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    encoding: Literal[ENCODINGS] = DENSE  # type: ignore[valid-type]
    blocksize: tuple[PositiveInt, PositiveInt] | None = None


class _WeightsModel(_Strict):
    file: Literal["model.safetensors"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


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
        raise SaveFileError(f"{file}: invalid metadata: {validation_message(err)}") from err
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
