"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type, ``NN`` the number
of dimensions), ``NN`` big-endian uint32 sizes, then the elements in row-major order, big-endian
(LeCun et al., "The MNIST database of handwritten digits", http://yann.lecun.com/exdb/mnist/).
Files may be gzipped; gzip is recognised by its own magic bytes, not by the file name.

Every check names the file and what is wrong with it, so a truncated download or a wrong file is
reported as such instead of surfacing later as a strange reshape error.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from prunekit.errors import DataError

#: IDX element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_BYTES = 4


def read_idx(path: str | Path, *, expect_ndim: int | None = None) -> np.ndarray:
    """Decode the IDX file at ``path`` (raw or gzipped) into a read-only numpy array.

    The array keeps the file's element type in native byte order (``uint8`` for MNIST).
    ``expect_ndim`` additionally checks the number of dimensions (3 for images, 1 for labels).
    Raises :class:`~prunekit.errors.DataError` naming the file if it is missing, is not valid
    gzip, has a malformed header, or holds more or fewer bytes than its header declares.
    """
    path = Path(path)
    payload = _read_bytes(path)
    dtype, dims = _parse_header(path, payload)
    if expect_ndim is not None and len(dims) != expect_ndim:
        raise DataError(
            f"IDX file {path} has {len(dims)} dimensions {dims}, expected {expect_ndim}"
        )
    offset = _HEADER_BYTES + 4 * len(dims)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(payload) - offset
    if actual != expected:
        what = "is truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"IDX file {path} {what}: header declares dims {dims} of {dtype.name} "
            f"({expected} data bytes) but the file holds {actual}"
        )
    array = np.frombuffer(payload, dtype=dtype, count=expected // dtype.itemsize, offset=offset)
    array = array.reshape(dims).astype(dtype.newbyteorder("="), copy=False)
    array.setflags(write=False)
    return array


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it if ``compress`` is true (default: name ends ``.gz``).

    The inverse of :func:`read_idx`, for tests and for exporting small data sets.
    """
    path = Path(path)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise DataError(f"cannot write {array.dtype} to IDX file {path}; IDX holds {_type_names()}")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"cannot write a {array.ndim}-dimensional array to IDX file {path}")
    header = bytes([0, 0, codes[dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[codes[dtype]]).tobytes()
    data = header + body
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if they are gzip."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except OSError as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"IDX file {path} is gzip but cannot be decompressed ({error}); "
            "the download is probably truncated or corrupt"
        ) from error


def _parse_header(path: Path, payload: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    """Element type and dimensions from an IDX header, checked."""
    if len(payload) < _HEADER_BYTES:
        raise DataError(f"IDX file {path} is too short ({len(payload)} bytes) to hold a header")
    zero_a, zero_b, type_code, ndim = payload[:_HEADER_BYTES]
    if zero_a or zero_b:
        raise DataError(
            f"IDX file {path} has a bad magic number {payload[:4].hex()} "
            "(the first two bytes must be zero); it is not an IDX file"
        )
    if type_code not in IDX_DTYPES:
        raise DataError(
            f"IDX file {path} has unknown element type code 0x{type_code:02x}; "
            f"known: {_type_names()}"
        )
    if ndim == 0:
        raise DataError(f"IDX file {path} declares 0 dimensions")
    end = _HEADER_BYTES + 4 * ndim
    if len(payload) < end:
        raise DataError(
            f"IDX file {path} is truncated inside its header: {ndim} dimensions need "
            f"{end} header bytes, the file holds {len(payload)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(payload, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[type_code], dims


def _type_names() -> str:
    return ", ".join(f"0x{code:02x} ({dtype.name})" for code, dtype in IDX_DTYPES.items())
