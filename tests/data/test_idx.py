import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.data import read_idx, write_idx
from prunekit.data.idx import IDX_DTYPES
from prunekit.errors import DataError

# magic 00 00 08 02 (uint8, 2 dims), dims 2 and 3, then the six bytes 0..5
UBYTE_2X3 = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_raw_ubyte_file_decodes_to_exact_array(tmp_path: Path) -> None:
    array = read_idx(write(tmp_path / "a-idx2-ubyte", UBYTE_2X3))
    assert array.dtype == np.uint8
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    array = read_idx(write(tmp_path / "no-gz-suffix", gzip.compress(UBYTE_2X3)))
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_big_endian_int16_is_decoded_to_native_values(tmp_path: Path) -> None:
    # type 0x0B (int16), 1 dim of 2: 0x0102 = 258 and 0xFFFE = -2
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    array = read_idx(write(tmp_path / "s.idx", data))
    assert array.tolist() == [258, -2]
    assert array.dtype == np.dtype("int16")


def test_decoded_array_is_read_only(tmp_path: Path) -> None:
    array = read_idx(write(tmp_path / "a.idx", UBYTE_2X3))
    with pytest.raises(ValueError):
        array[0, 0] = 7


@pytest.mark.parametrize("dtype", sorted({d.newbyteorder("=").str for d in IDX_DTYPES.values()}))
@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_write_then_read_round_trips_every_idx_type(tmp_path: Path, dtype: str, name: str) -> None:
    array = (np.arange(24) - 12).astype(dtype).reshape(2, 3, 4)
    if np.dtype(dtype).kind == "u":
        array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, array)
    assert path.read_bytes().startswith(b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(path), array)


def test_write_idx_writes_the_documented_header(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.idx", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert path.read_bytes() == UBYTE_2X3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x00", "too short"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 0]), "bad magic number"),
        (bytes([0, 0, 7, 1, 0, 0, 0, 1, 0]), "unknown element type code 0x07"),
        (bytes([0, 0, 8, 0]), "declares 0 dimensions"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated inside its header"),
        (UBYTE_2X3[:-1], "is truncated: header declares dims (2, 3) of uint8 (6 data bytes)"),
        (UBYTE_2X3 + b"\x00", "has trailing bytes"),
    ],
)
def test_malformed_file_raises_data_error_naming_file(
    tmp_path: Path, data: bytes, expected: str
) -> None:
    path = write(tmp_path / "bad-idx", data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_truncated_gzip_raises_data_error(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.gz", gzip.compress(UBYTE_2X3)[:-6])
    with pytest.raises(DataError, match="cannot be decompressed") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        read_idx(tmp_path / "nowhere.idx")
    assert str(tmp_path / "nowhere.idx") in str(info.value)


def test_expect_ndim_rejects_a_labels_file_given_as_images(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels.idx", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"has 1 dimensions \(4,\), expected 3"):
        read_idx(path, expect_ndim=3)


def test_write_refuses_a_type_idx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot write int64"):
        write_idx(tmp_path / "a.idx", np.zeros(2, dtype=np.int64))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    dtype=st.sampled_from(sorted({d.newbyteorder("=").str for d in IDX_DTYPES.values()})),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(shape: list[int], dtype: str, gz: bool, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        values = np.random.default_rng(seed).integers(-100, 100, size=shape)
        array = (
            np.abs(values).astype(dtype) if np.dtype(dtype).kind == "u" else values.astype(dtype)
        )
        path = write_idx(Path(folder) / "x.idx", array, compress=gz)
        decoded = read_idx(path)
    assert decoded.shape == tuple(shape) and decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)
