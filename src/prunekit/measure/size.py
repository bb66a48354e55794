"""Size of a model on disk, dense and in a compressed sparse encoding, measured in bytes.

Both sizes are the ``len`` of bytes actually serialised with ``safetensors``, from the model's
effective state dict (masks applied, no parametrization entries, each shared tensor once); the
model itself is never changed.

**Sparse encoding** (``prunekit-sparse-v1``), one safetensors blob. A floating-point tensor is
stored sparse when that takes fewer bytes than storing it dense, as two entries:

- ``"<name>::bitmask"``: ``uint8``, the row-major nonzero pattern packed 8 entries per byte with
  ``numpy.packbits`` (big-endian bit order, last byte zero-padded);
- ``"<name>::values"``: the nonzero values in row-major order, in the tensor's own dtype.

The blob's metadata ``"sparse"`` is a JSON object ``{name: shape}`` for the tensors stored this
way; every other tensor (biases, integer buffers, dense weights) is stored as is under its name.
:func:`decode_sparse` turns a blob back into the exact tensors.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import numpy as np
import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors_bytes
from torch import Tensor, nn

from prunekit.errors import SaveFileError
from prunekit.measure.effective import effective_state_dict

SPARSE_FORMAT = "prunekit-sparse-v1"
BITMASK_SUFFIX = "::bitmask"
VALUES_SUFFIX = "::values"


def _standalone(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU tensors that own their storage, aliases of an earlier tensor dropped (safetensors
    refuses tensors that share memory)."""
    seen: set[tuple[object, ...]] = set()
    out: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        t = tensor.detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if t.numel() and key in seen:
            continue
        seen.add(key)
        if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.contiguous().clone()
        out[name] = t
    return out


def encode_dense(tensors: Mapping[str, Tensor]) -> bytes:
    """The tensors serialised as one plain safetensors blob."""
    return safetensors.torch.save(_standalone(tensors))


def _sparse_parts(tensor: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(bitmask, values)`` for ``tensor`` if that is smaller than the dense tensor, else None."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    nonzero = (tensor != 0).flatten()
    bitmask = torch.from_numpy(np.packbits(nonzero.numpy()))
    values = tensor.flatten()[nonzero]
    sparse_bytes = bitmask.numel() + values.numel() * values.element_size()
    if sparse_bytes >= tensor.numel() * tensor.element_size():
        return None
    return bitmask, values


def encode_sparse(tensors: Mapping[str, Tensor]) -> bytes:
    """The tensors serialised in the ``prunekit-sparse-v1`` encoding (see the module docstring)."""
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
    numel = int(np.prod(shape))
    nonzero = torch.from_numpy(np.unpackbits(bitmask.numpy(), count=numel).astype(bool))
    out = torch.zeros(numel, dtype=values.dtype)
    out[nonzero] = values
    return out.reshape(shape)


def decode_sparse(blob: bytes) -> dict[str, Tensor]:
    """The tensors of a ``prunekit-sparse-v1`` blob, exactly as they were encoded."""
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


def dense_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state dict saved as plain safetensors."""
    return len(encode_dense(effective_state_dict(model)))


def sparse_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state dict in the ``prunekit-sparse-v1`` encoding."""
    return len(encode_sparse(effective_state_dict(model)))
