"""Bit-exact views of floating-point tensors and the packed row bitmask.

Sparse encodings copy stored values as integer bit patterns, so that decoding gives back every
bit of them (NaN payloads included). The bitmask packs each row of the 2-D view 8 entries per
byte, least significant bit first (``numpy.packbits(..., bitorder="little")``), each row padded
to a whole byte: the layout of compressed-tensors' ``sparse-bitmask`` format.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def as_bits(tensor: Tensor) -> Tensor:
    """``tensor`` (contiguous, CPU) reinterpreted as signed integers of the same width."""
    data = tensor.detach().to("cpu").contiguous()
    return data.view(_INT_OF_SIZE[data.element_size()])


def from_bits(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """The inverse of :func:`as_bits`."""
    return bits.contiguous().view(dtype)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view a tensor is encoded in: ``(shape[0], prod(shape[1:]))``; ``(1, n)`` for 1-D.

    For a Linear weight that is ``(out_features, in_features)``; for a conv weight it is one row
    per output channel, the order in which :meth:`torch.Tensor.reshape` lays it out.
    """
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def pack_rows(nonzero: Tensor) -> Tensor:
    """Pack a ``(rows, cols)`` bool tensor into ``uint8`` of shape ``(rows, ceil(cols / 8))``."""
    return torch.from_numpy(np.packbits(nonzero.numpy(), axis=-1, bitorder="little"))


def unpack_rows(packed: Tensor, cols: int) -> Tensor:
    """The inverse of :func:`pack_rows` (``cols`` drops the padding bits)."""
    bits = np.unpackbits(packed.numpy(), axis=-1, count=cols, bitorder="little")
    return torch.from_numpy(bits.astype(bool))


def split_bitmask(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``(bitmask, values)`` of a 2-D tensor: its nonzero pattern packed by :func:`pack_rows`,
    and its nonzero entries in row-major order, bit for bit (zero is compared by value)."""
    data = matrix.detach().to("cpu").contiguous()
    nonzero = data != 0
    return pack_rows(nonzero), from_bits(as_bits(data)[nonzero], data.dtype)


def join_bitmask(bitmask: Tensor, values: Tensor, cols: int) -> Tensor:
    """The inverse of :func:`split_bitmask`: a ``(rows, cols)`` tensor, zero where the bitmask
    is clear, ``values`` in row-major order elsewhere (the caller checks that the counts
    agree)."""
    nonzero = unpack_rows(bitmask, cols)
    out = torch.zeros(nonzero.shape, dtype=values.dtype)
    out[nonzero] = values
    return out
