"""Per-tensor sparse encodings: hand-worked parts, the size choice, exact round trips."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from prunekit.errors import ConfigError, SaveFileError
from prunekit.formats.bits import as_bits
from prunekit.formats.decoding import decode
from prunekit.formats.encodings import BITMASK, BSR, CSR, DENSE, encode, encode_as

# row 0: 1.5 at column 1, 2.0 at column 8; row 1: -3.0 at column 0
SMALL = torch.tensor([[0.0, 1.5, 0, 0, 0, 0, 0, 0, 2.0], [-3.0, 0, 0, 0, 0, 0, 0, 0, 0]])


def roundtrip(tensor: Tensor) -> tuple[str, Tensor]:
    enc = encode(tensor)
    out = decode(enc.format, enc.parts, tuple(tensor.shape), tensor.dtype, enc.blocksize, "t")
    return enc.format, out


def same_bits(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(as_bits(a), as_bits(b))


def test_bitmask_parts_by_hand() -> None:
    parts = encode_as(SMALL, BITMASK).parts
    # LSB first: row 0 sets bit 1 of byte 0 (=2) and bit 0 of byte 1 (=1); row 1 bit 0 of byte 0
    assert parts["bitmask"].tolist() == [[2, 1], [1, 0]]
    assert parts["bitmask"].dtype == torch.uint8
    assert parts["compressed"].tolist() == [1.5, 2.0, -3.0]
    assert parts["row_offsets"].tolist() == [0, 2]
    assert parts["shape"].tolist() == [2, 9]


def test_csr_parts_by_hand() -> None:
    parts = encode_as(SMALL, CSR).parts
    assert parts["crow_indices"].tolist() == [0, 2, 3]
    assert parts["col_indices"].tolist() == [1, 8, 0]
    assert parts["col_indices"].dtype == torch.int16  # 9 columns fit in int16
    assert parts["compressed"].tolist() == [1.5, 2.0, -3.0]


def test_bsr_parts_by_hand() -> None:
    enc = encode_as(SMALL, BSR, (1, 3))
    # 1x3 tiles: row 0 has tiles 0 (columns 0-2) and 2 (columns 6-8), row 1 has tile 0
    assert enc.parts["crow_indices"].tolist() == [0, 2, 3]
    assert enc.parts["col_indices"].tolist() == [0, 2, 0]
    assert enc.parts["compressed"].tolist() == [[[0, 1.5, 0]], [[0, 0, 2.0]], [[-3.0, 0, 0]]]
    assert enc.blocksize == (1, 3)


@pytest.mark.parametrize("fmt", [BITMASK, CSR, BSR])
def test_each_format_decodes_the_small_tensor(fmt: str) -> None:
    enc = encode_as(SMALL, fmt, (1, 3) if fmt == BSR else None)
    out = decode(enc.format, enc.parts, (2, 9), torch.float32, enc.blocksize, "t")
    assert same_bits(out, SMALL)


def _sparse(shape: tuple[int, ...], sparsity: float, dtype: torch.dtype = torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(shape, generator=g).to(dtype)
    keep = torch.rand(shape, generator=g) >= sparsity
    return torch.where(keep, values, torch.zeros((), dtype=dtype))


def _two_of_four(rows: int, cols: int) -> Tensor:
    g = torch.Generator().manual_seed(1)
    order = torch.rand(rows, cols // 4, 4, generator=g).argsort(-1)
    keep = torch.zeros(rows, cols // 4, 4, dtype=torch.bool).scatter(-1, order[..., :2], True)
    return torch.where(keep.reshape(rows, cols), torch.randn(rows, cols, generator=g), 0.0)


def _blocks(rows: int, cols: int, block: int, sparsity: float) -> Tensor:
    g = torch.Generator().manual_seed(2)
    keep = torch.rand(rows // block, cols // block, generator=g) >= sparsity
    keep = keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.where(keep, torch.randn(rows, cols, generator=g), 0.0)


@pytest.mark.parametrize(
    ("tensor", "fmt", "blocksize"),
    [
        (_sparse((128, 256), 0.9), BITMASK, None),
        (_sparse((128, 256), 0.99), CSR, None),
        (_blocks(128, 256, 4, 0.9), BSR, (4, 4)),
        (_sparse((128, 256), 0.0), DENSE, None),
        (torch.arange(1000), DENSE, None),  # integers stay dense
    ],
    ids=["unstructured-90", "unstructured-99", "blocks-4x4", "dense", "int64"],
)
def test_the_smallest_encoding_is_chosen(
    tensor: Tensor, fmt: str, blocksize: tuple[int, int] | None
) -> None:
    enc = encode(tensor)
    assert (enc.format, enc.blocksize) == (fmt, blocksize)


def test_ninety_percent_bitmask_is_an_eighth_bit_per_entry_plus_values() -> None:
    tensor = _sparse((128, 256), 0.9)
    nnz = int(torch.count_nonzero(tensor))
    # 128 rows x 32 bytes of bitmask, 4 bytes per value, 8 per row offset, 8 per shape entry
    assert encode(tensor).nbytes() == 128 * 32 + 4 * nnz + 8 * 128 + 8 * 2


@pytest.mark.parametrize(
    "tensor",
    [
        _sparse((64, 96), 0.5),
        _sparse((64, 96), 0.9),
        _sparse((64, 96), 0.97),
        _two_of_four(64, 96),
        _blocks(64, 96, 8, 0.8),
        _sparse((16, 8, 3, 3), 0.9),
        _sparse((4000,), 0.95),
        _sparse((64, 96), 0.9, torch.float16),
        _sparse((64, 96), 0.9, torch.bfloat16),
        _sparse((64, 96), 0.9, torch.float64),
        _sparse((3, 5), 0.5),
    ],
    ids=["u50", "u90", "u97", "2:4", "block8", "conv", "1d", "fp16", "bf16", "fp64", "tiny"],
)
def test_round_trip_is_bitwise_exact(tensor: Tensor) -> None:
    _, out = roundtrip(tensor)
    assert same_bits(out, tensor)


def test_nan_and_infinity_are_kept_bit_for_bit() -> None:
    tensor = _sparse((64, 64), 0.95)
    tensor[0, 0], tensor[1, 1] = float("nan"), float("-inf")
    fmt, out = roundtrip(tensor)
    assert fmt != DENSE
    assert same_bits(out, tensor)


def test_negative_zero_comes_back_as_positive_zero() -> None:
    tensor = _sparse((64, 64), 0.9)
    negative_zeros = tensor == 0
    tensor[negative_zeros] = -0.0  # what masking negative weights by multiplication gives
    fmt, out = roundtrip(tensor)
    assert fmt != DENSE
    assert torch.equal(out, tensor)  # equal as values
    assert not torch.signbit(out[negative_zeros]).any()  # but stored zeros are +0.0


def test_bsr_keeps_zeros_inside_tiles_bit_for_bit() -> None:
    tensor = _blocks(64, 64, 4, 0.9)
    tensor[tensor < 0] *= -1
    occupied = tensor.nonzero()[0]
    tensor[occupied[0], occupied[1]] = -0.0  # a negative zero inside a stored tile
    fmt, out = roundtrip(tensor)
    assert fmt == BSR
    assert same_bits(out, tensor)


def test_bad_blocksize_and_format_are_refused() -> None:
    with pytest.raises(ConfigError, match="does not tile the 2x9"):
        encode_as(SMALL, BSR, (2, 2))
    with pytest.raises(ConfigError, match="unknown sparse encoding 'coo'"):
        encode_as(SMALL, "coo")


def test_damaged_parts_are_refused_with_the_tensor_and_part_named() -> None:
    parts = dict(encode_as(SMALL, BITMASK).parts)
    with pytest.raises(
        SaveFileError, match=r"w: the shape part says \(2, 9\), the metadata \(3, 9\)"
    ):
        decode(BITMASK, parts, (3, 9), torch.float32, None, "w")
    no_shape = {k: v for k, v in parts.items() if k != "shape"}
    with pytest.raises(
        SaveFileError, match=r"w: bitmask is torch.uint8 \(2, 2\), expected .*\(3, 2\)"
    ):
        decode(BITMASK, no_shape, (3, 9), torch.float32, None, "w")
    with pytest.raises(SaveFileError, match=r"w: compressed has shape \(2,\), expected \(3,\)"):
        decode(BITMASK, {**parts, "compressed": parts["compressed"][:2]}, (2, 9),
               torch.float32, None, "w")  # fmt: skip
    with pytest.raises(SaveFileError, match="w: row_offsets do not match the bitmask"):
        decode(BITMASK, {**parts, "row_offsets": torch.tensor([0, 1])}, (2, 9),
               torch.float32, None, "w")  # fmt: skip
    csr = dict(encode_as(SMALL, CSR).parts)
    csr["col_indices"] = torch.tensor([1, 9, 0], dtype=torch.int16)
    with pytest.raises(SaveFileError, match=r"w: a column index is not in \[0, 9\)"):
        decode(CSR, csr, (2, 9), torch.float32, None, "w")
    csr["col_indices"] = torch.tensor([8, 1, 0], dtype=torch.int16)
    with pytest.raises(SaveFileError, match="not increasing within rows"):
        decode(CSR, csr, (2, 9), torch.float32, None, "w")
    with pytest.raises(SaveFileError, match="the part 'col_indices' is missing"):
        decode(CSR, {k: v for k, v in csr.items() if k != "col_indices"}, (2, 9),
               torch.float32, None, "w")  # fmt: skip
