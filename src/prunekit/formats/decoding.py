"""Decoding the per-tensor sparse encodings of :mod:`prunekit.formats.encodings`, checked.

Every part is checked against the declared shape and dtype before it is used (sizes, index
ranges, strictly increasing positions, offsets that agree with the bitmask), so a damaged or
hand-edited file fails with a :class:`~prunekit.errors.SaveFileError` naming the tensor and the
part, never with a bare indexing error or a silently wrong tensor.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from prunekit.errors import SaveFileError
from prunekit.formats.bits import as_bits, from_bits, join_bitmask, matrix_shape, unpack_rows
from prunekit.formats.encodings import BITMASK, BSR, CSR, DENSE


def _part(parts: Mapping[str, Tensor], key: str, where: str) -> Tensor:
    if key not in parts:
        raise SaveFileError(f"{where}: the part {key!r} is missing")
    return parts[key]


def _expect(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise SaveFileError(f"{where}: {message}")


def _values(
    parts: Mapping[str, Tensor], shape: tuple[int, ...], dtype: torch.dtype, where: str
) -> Tensor:
    values = _part(parts, "compressed", where)
    _expect(values.dtype == dtype, where, f"compressed has dtype {values.dtype}, expected {dtype}")
    _expect(
        tuple(values.shape) == shape,
        where,
        f"compressed has shape {tuple(values.shape)}, expected {shape}",
    )
    return as_bits(values)


def _positions(parts: Mapping[str, Tensor], rows: int, cols: int, where: str) -> Tensor:
    """Flat row-major positions of the stored entries of a CSR grid of ``(rows, cols)``."""
    crow = _part(parts, "crow_indices", where).to(torch.int64)
    col = _part(parts, "col_indices", where).to(torch.int64)
    _expect(
        tuple(crow.shape) == (rows + 1,),
        where,
        f"crow_indices has shape {tuple(crow.shape)}, expected ({rows + 1},)",
    )
    _expect(col.ndim == 1, where, f"col_indices has shape {tuple(col.shape)}, expected 1-D")
    counts = crow.diff()
    _expect(
        int(crow[0]) == 0 and bool((counts >= 0).all()) and int(crow[-1]) == col.numel(),
        where,
        "crow_indices are not offsets from 0 to the number of entries",
    )
    _expect(bool(((col >= 0) & (col < cols)).all()), where, f"a column index is not in [0, {cols})")
    flat = torch.repeat_interleave(torch.arange(rows), counts) * cols + col
    _expect(bool((flat.diff() > 0).all()), where, "column indices are not increasing within rows")
    return flat


def _bitmask(
    parts: Mapping[str, Tensor], rows: int, cols: int, dtype: torch.dtype, where: str
) -> Tensor:
    packed = _part(parts, "bitmask", where)
    want = (rows, (cols + 7) // 8)
    _expect(
        packed.dtype == torch.uint8 and tuple(packed.shape) == want,
        where,
        f"bitmask is {packed.dtype} {tuple(packed.shape)}, expected torch.uint8 {want}",
    )
    nonzero = unpack_rows(packed, cols)
    counts = nonzero.sum(dim=1)
    values = _values(parts, (int(counts.sum()),), dtype, where)
    if "row_offsets" in parts:
        offsets = parts["row_offsets"].to(torch.int64)
        _expect(
            torch.equal(offsets, counts.cumsum(0) - counts),
            where,
            "row_offsets do not match the bitmask",
        )
    return join_bitmask(packed, values, cols)


def _csr(
    parts: Mapping[str, Tensor], rows: int, cols: int, dtype: torch.dtype, where: str
) -> Tensor:
    flat = _positions(parts, rows, cols, where)
    values = _values(parts, (flat.numel(),), dtype, where)
    out = torch.zeros(rows * cols, dtype=values.dtype)
    out[flat] = values
    return out.reshape(rows, cols)


def _bsr(
    parts: Mapping[str, Tensor],
    rows: int,
    cols: int,
    dtype: torch.dtype,
    blocksize: tuple[int, int] | None,
    where: str,
) -> Tensor:
    _expect(blocksize is not None, where, "sparse-bsr needs a blocksize")
    assert blocksize is not None
    br, bc = blocksize
    _expect(
        br > 0 and bc > 0 and rows % br == 0 and cols % bc == 0,
        where,
        f"blocksize {blocksize} does not tile the {rows}x{cols} matrix",
    )
    grid_rows, grid_cols = rows // br, cols // bc
    flat = _positions(parts, grid_rows, grid_cols, where)
    values = _values(parts, (flat.numel(), br, bc), dtype, where)
    tiles = torch.zeros(grid_rows * grid_cols, br, bc, dtype=values.dtype)
    tiles[flat] = values
    return tiles.reshape(grid_rows, grid_cols, br, bc).permute(0, 2, 1, 3).reshape(rows, cols)


def decode(
    fmt: str,
    parts: Mapping[str, Tensor],
    shape: tuple[int, ...],
    dtype: torch.dtype,
    blocksize: tuple[int, int] | None,
    where: str,
) -> Tensor:
    """The tensor that :func:`~prunekit.formats.encodings.encode` encoded as ``parts``.

    ``where`` names the tensor (and file) in error messages.
    """
    if fmt == DENSE:
        return _part(parts, "", where)
    if "shape" in parts:
        stored = tuple(int(v) for v in parts["shape"].tolist())
        _expect(stored == shape, where, f"the shape part says {stored}, the metadata {shape}")
    _expect(
        len(shape) >= 1 and dtype.is_floating_point,
        where,
        f"a {fmt} tensor must be floating point with at least one dimension",
    )
    rows, cols = matrix_shape(shape)
    if fmt == BITMASK:
        bits = _bitmask(parts, rows, cols, dtype, where)
    elif fmt == CSR:
        bits = _csr(parts, rows, cols, dtype, where)
    elif fmt == BSR:
        bits = _bsr(parts, rows, cols, dtype, blocksize, where)
    else:
        raise SaveFileError(f"{where}: unknown encoding {fmt!r}; known: {BITMASK}, {CSR}, {BSR}")
    return from_bits(bits, dtype).reshape(shape)
