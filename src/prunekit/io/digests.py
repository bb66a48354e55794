"""Per-tensor digests that bind each saved tensor's values to its name.

The whole-file SHA-256 of ``model.safetensors`` catches a damaged file, but not entries that
were swapped: two same-shaped tensors exchanged in the weights file (with the file digest
updated) or two names pointing at each other's keys in ``prunekit.json``. Each record of
``prunekit.json`` therefore also carries the SHA-256 of its label (the tensor name, with the
mask or original prefix), dtype, shape and raw bytes; a value found under another name no
longer matches.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def tensor_digest(label: str, tensor: Tensor) -> str:
    """Hex SHA-256 of ``label``, ``tensor``'s dtype and shape, and its bytes (in C order)."""
    data = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = data.to(torch.uint8) if data.dtype == torch.bool else data.view(torch.uint8)
    digest = hashlib.sha256()
    header = f"{label}\0{str(data.dtype).removeprefix('torch.')}\0{tuple(tensor.shape)}\0"
    digest.update(header.encode("utf-8"))
    if raw.numel():
        digest.update(raw.numpy().data)
    return digest.hexdigest()
