"""Size of a model on disk, dense and in a compressed sparse encoding, measured in bytes.

Both sizes are the ``len`` of bytes actually serialised with ``safetensors``, from the model's
effective state dict (masks applied, no parametrization entries, each shared tensor once); the
model itself is never changed.

**Sparse encoding** (``prunekit-sparse-v2``), one safetensors blob. A floating-point tensor is
stored sparse when that takes fewer bytes than storing it dense, as two entries:

- ``"<name>::bitmask"``: ``uint8``, the row-major nonzero pattern of the flattened tensor packed
  8 entries per byte, least significant bit first, last byte zero-padded (the bitmask of
  :mod:`prunekit.formats`, over one row);
- ``"<name>::values"``: the nonzero values in row-major order, in the tensor's own dtype.

It is the simplest of the bitmask encodings (one flat bitmask, no row offsets), so the size is a
property of the nonzero count alone; the files :func:`prunekit.io.save` and
:func:`prunekit.sparse.save_compressed` write choose per tensor among bitmask, CSR and block CSR
(:mod:`prunekit.formats.encodings`) and can be smaller.

The blob's metadata ``"sparse"`` is a JSON object ``{name: shape}`` for the tensors stored this
way; every other tensor (biases, integer buffers, dense weights) is stored as is under its name.
:func:`decode_sparse` turns a blob back into the exact tensors.

:func:`dense_size_bytes` and :func:`sparse_size_bytes` compute those lengths without writing the
blobs (writing one costs a copy of the model): a safetensors file is an 8-byte header length,
a JSON header padded with spaces to a multiple of 8 bytes, then the tensors' bytes, so its
length follows from the names, dtypes and shapes alone (:func:`safetensors_size`). The order of
the header entries (by dtype, then name) is read once per set of dtypes from a tiny blob that
the installed ``safetensors`` writes, and the tests check the computed lengths against real
blobs.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Iterable, Mapping

import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors_bytes
from torch import Tensor, nn

from prunekit.errors import SaveFileError
from prunekit.formats.bits import join_bitmask, split_bitmask
from prunekit.measure.effective import effective_state_dict

SPARSE_FORMAT = "prunekit-sparse-v2"
BITMASK_SUFFIX = "::bitmask"
VALUES_SUFFIX = "::values"


def _distinct(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tensors without the aliases of an earlier one (the same memory, shape and dtype):
    a serialiser stores each once."""
    seen: set[tuple[object, ...]] = set()
    out: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        t = tensor.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = t
    return out


def _standalone(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU tensors that own their storage, aliases of an earlier tensor dropped (safetensors
    refuses tensors that share memory)."""
    out: dict[str, Tensor] = {}
    for name, tensor in _distinct(tensors).items():
        t = tensor.cpu()
        if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.contiguous().clone()
        out[name] = t
    return out


Spec = tuple[str, torch.dtype, tuple[int, ...]]
"""``(name, dtype, shape)`` of one stored tensor."""


@functools.lru_cache(maxsize=64)
def _dtype_layout(dtypes: tuple[torch.dtype, ...]) -> dict[torch.dtype, tuple[int, str]]:
    """For each dtype, its rank in the header order of the installed ``safetensors`` and the
    name it writes (``"F32"``), read from a blob of one 1-element tensor per dtype."""
    probe = {str(i): torch.zeros(1, dtype=d) for i, d in enumerate(dtypes)}
    blob = safetensors.torch.save(probe)
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])  # key order is the file's order
    return {
        dtypes[int(key)]: (rank, entry["dtype"])
        for rank, (key, entry) in enumerate(
            (k, v) for k, v in header.items() if k != "__metadata__"
        )
    }


def _storable(dtype: torch.dtype) -> bool:
    try:
        _dtype_layout((dtype,))
    except Exception:
        return False
    return True


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def safetensors_size(specs: Iterable[Spec], metadata: Mapping[str, str] | None = None) -> int:
    """Bytes of the safetensors blob holding tensors of these names, dtypes and shapes (and
    ``metadata``), computed without writing it (see the module docstring)."""
    specs = list(specs)
    dtypes = tuple(sorted({d for _, d, _ in specs}, key=str))
    try:
        layout = _dtype_layout(dtypes)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        stored = [d for d in dtypes if _storable(d)]
        bad = next((d for d in dtypes if d not in stored), dtypes[0] if dtypes else None)
        names = [n for n, d, _ in specs if d == bad][:3]
        raise SaveFileError(
            f"safetensors cannot store dtype {bad} (tensors {names}), so the size on disk "
            f"cannot be measured ({type(err).__name__}: {err})"
        ) from err
    entries = sorted(specs, key=lambda s: (layout[s[1]][0], s[0]))
    parts = [f'"__metadata__":{_json(dict(metadata))}'] if metadata else []
    offset = 0
    for name, dtype, shape in entries:
        end = offset + math.prod(shape) * dtype.itemsize
        parts.append(
            f'{_json(name)}:{{"dtype":"{layout[dtype][1]}","shape":{_json(list(shape))},'
            f'"data_offsets":[{offset},{end}]}}'
        )
        offset = end
    header = len(("{" + ",".join(parts) + "}").encode())
    return 8 + header + (-header) % 8 + offset


def encode_dense(tensors: Mapping[str, Tensor]) -> bytes:
    """The tensors serialised as one plain safetensors blob."""
    return safetensors.torch.save(_standalone(tensors))


def _sparse_parts(tensor: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(bitmask, values)`` for ``tensor`` if that is smaller than the dense tensor, else None."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    bitmask, values = split_bitmask(tensor.reshape(1, -1))
    bitmask = bitmask.reshape(-1)
    sparse_bytes = bitmask.numel() + values.numel() * values.element_size()
    if sparse_bytes >= tensor.numel() * tensor.element_size():
        return None
    return bitmask, values


def encode_sparse(tensors: Mapping[str, Tensor]) -> bytes:
    """The tensors serialised in the ``prunekit-sparse-v2`` encoding (see the module docstring)."""
    stored: dict[str, Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, tensor in _standalone(tensors).items():
        parts = _sparse_parts(tensor)
        if parts is None:
            stored[name] = tensor
            continue
        stored[name + BITMASK_SUFFIX], stored[name + VALUES_SUFFIX] = parts
        shapes[name] = list(tensor.shape)
    metadata = {"format": SPARSE_FORMAT, "sparse": json.dumps(shapes)}
    return safetensors.torch.save(stored, metadata=metadata)


def _metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (8-byte little-endian header length + JSON)."""
    try:
        (length,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + length])
    except (struct.error, ValueError) as err:
        raise SaveFileError(f"not a safetensors blob: {err}") from err
    metadata = header.get("__metadata__", {})
    return metadata if isinstance(metadata, dict) else {}


def _unpack(bitmask: Tensor, values: Tensor, shape: list[int]) -> Tensor:
    return join_bitmask(bitmask.reshape(1, -1), values, math.prod(shape)).reshape(shape)


def decode_sparse(blob: bytes) -> dict[str, Tensor]:
    """The tensors of a ``prunekit-sparse-v2`` blob, exactly as they were encoded."""
    metadata = _metadata(blob)
    if metadata.get("format") != SPARSE_FORMAT:
        raise SaveFileError(f"not a {SPARSE_FORMAT} blob (format {metadata.get('format')!r})")
    stored = load_safetensors_bytes(blob)
    shapes: dict[str, list[int]] = json.loads(metadata["sparse"])
    out: dict[str, Tensor] = {}
    for key, tensor in stored.items():
        name, _, part = key.rpartition("::")
        if name in shapes and "::" + part == BITMASK_SUFFIX:
            out[name] = _unpack(tensor, stored[name + VALUES_SUFFIX], shapes[name])
        elif not (name in shapes and "::" + part == VALUES_SUFFIX):
            out[key] = tensor
    return out


def dense_size(tensors: Mapping[str, Tensor]) -> int:
    """``len(encode_dense(tensors))``, computed without encoding."""
    return safetensors_size((n, t.dtype, tuple(t.shape)) for n, t in _distinct(tensors).items())


def sparse_size(tensors: Mapping[str, Tensor], nonzeros: Mapping[str, int] | None = None) -> int:
    """``len(encode_sparse(tensors))``, computed without encoding; ``nonzeros`` may give the
    nonzero count of some tensors (by name) so that they are not counted again."""
    specs: list[Spec] = []
    shapes: dict[str, list[int]] = {}
    for name, t in _distinct(tensors).items():
        shape, n = tuple(t.shape), t.numel()
        if t.is_floating_point() and n:
            nnz = nonzeros[name] if nonzeros and name in nonzeros else int(torch.count_nonzero(t))
            if (n + 7) // 8 + nnz * t.element_size() < n * t.element_size():
                specs.append((name + BITMASK_SUFFIX, torch.uint8, ((n + 7) // 8,)))
                specs.append((name + VALUES_SUFFIX, t.dtype, (nnz,)))
                shapes[name] = list(shape)
                continue
        specs.append((name, t.dtype, shape))
    return safetensors_size(specs, {"format": SPARSE_FORMAT, "sparse": json.dumps(shapes)})


def dense_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state dict saved as plain safetensors."""
    return dense_size(effective_state_dict(model))


def sparse_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state dict in the ``prunekit-sparse-v2`` encoding."""
    return sparse_size(effective_state_dict(model))
