"""Per-tensor sparse encodings, and the choice of the smallest one for each tensor.

A floating-point tensor of ``shape`` is encoded in its 2-D view ``(rows, cols)``
(:func:`~prunekit.formats.bits.matrix_shape`) as one of:

``sparse-bitmask`` (the layout of compressed-tensors' bitmask compressor)
    ``bitmask``: ``uint8 (rows, ceil(cols / 8))``, each row's nonzero pattern packed LSB first;
    ``compressed``: the nonzero values in row-major order; ``row_offsets``: ``int64 (rows,)``,
    where each row's values start in ``compressed``.
``sparse-csr`` (compressed sparse rows)
    ``crow_indices``: ``(rows + 1,)``; ``col_indices``: one column per nonzero; ``compressed``:
    the nonzero values. Pays at high sparsity, where a column index (2 bytes when
    ``cols <= 32768``) costs less than a bitmask over every entry.
``sparse-bsr`` (block CSR with ``blocksize = (br, bc)``)
    CSR over the ``(rows / br, cols / bc)`` grid of tiles, ``compressed`` holding each nonzero
    tile whole, ``(n_tiles, br, bc)``. Pays for block-structured sparsity.

Every encoding also holds ``shape``: ``int64``, the tensor's own shape. Index tensors use the
smallest signed integer type that holds them (``int16``, ``int32`` or ``int64``). The encoding
with the fewest bytes is chosen per tensor, dense when nothing is smaller.

Zero is compared by value, as every sparse format does: a ``-0.0`` (masking a negative weight by
multiplication gives one) is not stored and comes back as ``+0.0``. Stored values are copied as
bit patterns, so every other entry, NaN payloads included, comes back bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.formats.bits import as_bits, from_bits, matrix_shape, split_bitmask

DENSE = "dense"
BITMASK = "sparse-bitmask"
CSR = "sparse-csr"
BSR = "sparse-bsr"
FORMATS = (DENSE, BITMASK, CSR, BSR)

BLOCK_SIZES: tuple[tuple[int, int], ...] = (
    (2, 2), (4, 4), (8, 8), (16, 16), (32, 32), (1, 4), (1, 8), (1, 16), (1, 32),
    (4, 1), (8, 1), (16, 1), (32, 1),
)  # fmt: skip
"""Tile shapes tried for ``sparse-bsr`` (those that divide the 2-D view)."""

ENTRY_BYTES = 96
"""Rough header bytes of one safetensors entry: each extra part must pay for itself."""


@dataclass(frozen=True)
class Encoded:
    """One tensor as stored: its format, its parts by suffix (``{"": t}`` when dense) and, for
    ``sparse-bsr``, the tile shape."""

    format: str
    parts: Mapping[str, Tensor]
    blocksize: tuple[int, int] | None = None

    def nbytes(self) -> int:
        """Bytes of the parts' values (headers not counted)."""
        return sum(t.numel() * t.element_size() for t in self.parts.values())


def index_dtype(limit: int) -> torch.dtype:
    """The smallest signed integer type holding every value in ``[0, limit]``."""
    for dtype in (torch.int16, torch.int32):
        if limit <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _csr_bytes(rows: int, cols: int, nnz: int, width: int) -> int:
    crow = (rows + 1) * index_dtype(nnz).itemsize
    return crow + nnz * (index_dtype(cols - 1).itemsize + width) + 4 * ENTRY_BYTES


def tile_occupancy(nonzero: Tensor) -> dict[tuple[int, int], Tensor]:
    """For every tile shape of :data:`BLOCK_SIZES` that tiles the matrix, which tiles hold a
    nonzero (a bool grid); rows are reduced once per tile width and shared between shapes."""
    rows, cols = nonzero.shape
    flags = nonzero.view(torch.uint8)
    by_width: dict[int, Tensor] = {}
    found: dict[tuple[int, int], Tensor] = {}
    for br, bc in BLOCK_SIZES:
        if rows % br or cols % bc or (br, bc) == (rows, cols):
            continue
        if bc not in by_width:
            by_width[bc] = flags if bc == 1 else flags.reshape(rows, cols // bc, bc).amax(-1)
        tiles = by_width[bc]
        if br > 1:
            tiles = tiles.reshape(rows // br, br, cols // bc).amax(1)
        found[br, bc] = tiles.bool()
    return found


def _plan(nonzero: Tensor, width: int) -> tuple[str, tuple[int, int] | None]:
    """The format (and tile shape) with the fewest bytes for this nonzero pattern."""
    rows, cols = nonzero.shape
    nnz = int(nonzero.sum())
    sizes: dict[tuple[str, tuple[int, int] | None], int] = {
        (DENSE, None): rows * cols * width,
        (BITMASK, None): rows * math.ceil(cols / 8) + nnz * width + rows * 8 + 4 * ENTRY_BYTES,
        (CSR, None): _csr_bytes(rows, cols, nnz, width),
    }
    for (br, bc), tiles in tile_occupancy(nonzero).items():
        n = int(tiles.sum())
        grid = _csr_bytes(rows // br, cols // bc, n, 0)
        sizes[BSR, (br, bc)] = grid + n * br * bc * width
    return min(sizes, key=lambda k: sizes[k])  # the first of equals: dense before sparse


def _csr_parts(nonzero: Tensor, cols: int) -> dict[str, Tensor]:
    counts = nonzero.sum(dim=1)
    nnz = int(counts.sum())
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    col = nonzero.nonzero()[:, 1]
    return {
        "crow_indices": crow.to(index_dtype(nnz)),
        "col_indices": col.to(index_dtype(cols - 1)),
    }


def _bitmask_parts(matrix: Tensor, nonzero: Tensor) -> dict[str, Tensor]:
    counts = nonzero.sum(dim=1)
    bitmask, values = split_bitmask(matrix)
    return {"bitmask": bitmask, "compressed": values, "row_offsets": counts.cumsum(0) - counts}


def _bsr_parts(
    bits: Tensor, nonzero: Tensor, dtype: torch.dtype, blocksize: tuple[int, int]
) -> dict[str, Tensor]:
    rows, cols = bits.shape
    br, bc = blocksize
    if br < 1 or bc < 1 or rows % br or cols % bc:
        raise ConfigError(f"blocksize {blocksize} does not tile the {rows}x{cols} matrix")
    tiles = bits.reshape(rows // br, br, cols // bc, bc).permute(0, 2, 1, 3)
    occupied = nonzero.reshape(rows // br, br, cols // bc, bc).any(dim=3).any(dim=1)
    return {**_csr_parts(occupied, cols // bc), "compressed": from_bits(tiles[occupied], dtype)}


def encode_as(tensor: Tensor, fmt: str, blocksize: tuple[int, int] | None = None) -> Encoded:
    """``tensor`` in the encoding ``fmt`` (one of :data:`FORMATS`; ``sparse-bsr`` needs
    ``blocksize``), whether or not it is the smallest."""
    data = tensor.detach().to("cpu").contiguous()
    if fmt == DENSE:
        return Encoded(DENSE, {"": data})
    if fmt not in FORMATS:
        raise ConfigError(f"unknown sparse encoding {fmt!r}; known: {', '.join(FORMATS)}")
    if not data.is_floating_point() or data.ndim == 0:
        raise ConfigError(
            f"{fmt} stores floating-point tensors of at least one dimension, got "
            f"{data.dtype} {tuple(data.shape)}"
        )
    rows, cols = matrix_shape(tuple(data.shape))
    bits = as_bits(data).reshape(rows, cols)
    nonzero = data.reshape(rows, cols) != 0
    shape = {"shape": torch.tensor(data.shape, dtype=torch.int64)}
    if fmt == BITMASK:
        return Encoded(BITMASK, {**_bitmask_parts(data.reshape(rows, cols), nonzero), **shape})
    if fmt == CSR:
        values = from_bits(bits[nonzero], data.dtype)
        return Encoded(CSR, {**_csr_parts(nonzero, cols), "compressed": values, **shape})
    if blocksize is None:
        raise ConfigError("sparse-bsr needs a blocksize (rows, cols) of its tiles")
    parts = _bsr_parts(bits, nonzero, data.dtype, blocksize)
    return Encoded(BSR, {**parts, **shape}, (blocksize[0], blocksize[1]))


def encode(tensor: Tensor) -> Encoded:
    """``tensor`` in the encoding with the fewest bytes (see the module docstring)."""
    data = tensor.detach().to("cpu").contiguous()
    if not data.is_floating_point() or data.ndim == 0 or data.numel() == 0:
        return Encoded(DENSE, {"": data})
    nonzero = data.reshape(matrix_shape(tuple(data.shape))) != 0
    if bool(nonzero.all()):  # no zeros: nothing can beat dense, skip the planning
        return Encoded(DENSE, {"": data})
    fmt, blocksize = _plan(nonzero, data.element_size())
    return encode_as(data, fmt, blocksize)
