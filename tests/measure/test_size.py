"""Dense and sparse sizes are real serialised bytes; the sparse encoding round-trips exactly."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors_bytes
from torch import Tensor, nn

from prunekit.errors import SaveFileError
from prunekit.masks import apply_masks, bake_masks, is_masked
from prunekit.measure import (
    decode_sparse,
    dense_size_bytes,
    encode_dense,
    encode_sparse,
    sparse_size_bytes,
)


def _ninety_percent_sparse(rows: int = 40, cols: int = 25) -> Tensor:
    values = torch.arange(1, rows * cols + 1, dtype=torch.float32).reshape(rows, cols)
    keep = torch.zeros(rows * cols, dtype=torch.bool)
    keep[::10] = True  # 1 in 10 kept
    return values * keep.reshape(rows, cols)


def _masked_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(25, 40), nn.ReLU(), nn.Linear(40, 3))
    apply_masks(model, {"0.weight": (_ninety_percent_sparse() != 0).float()})
    return model


def test_sparse_blob_is_smaller_for_a_ninety_percent_sparse_tensor() -> None:
    tensor = _ninety_percent_sparse()
    dense, sparse = encode_dense({"w": tensor}), encode_sparse({"w": tensor})
    assert len(dense) > 4000  # 1000 float32 values
    # 125 bytes of bitmask + 100 float32 values, plus the header
    assert len(sparse) < len(dense) / 3
    assert sorted(load_safetensors_bytes(sparse)) == ["w::bitmask", "w::values"]
    assert load_safetensors_bytes(sparse)["w::bitmask"].numel() == 125


@pytest.mark.parametrize(
    "tensor",
    [
        _ninety_percent_sparse(),
        _ninety_percent_sparse(3, 5),  # 15 entries: the last bitmask byte is padded
        _ninety_percent_sparse(4, 6).to(torch.bfloat16),
        torch.zeros(2, 3, 4),
        torch.tensor([1.0, -2.0, 3.0]),  # no zeros: stored dense
        torch.tensor([0, 0, 7, 0]),  # integers: stored dense
        torch.zeros(0, 4),
    ],
    ids=["90pct", "odd-size", "bf16", "all-zero", "dense", "int", "empty"],
)
def test_sparse_encoding_round_trips_exactly(tensor: Tensor) -> None:
    decoded = decode_sparse(encode_sparse({"layer.weight": tensor, "bias": torch.ones(3)}))
    assert sorted(decoded) == ["bias", "layer.weight"]
    assert decoded["layer.weight"].dtype == tensor.dtype
    assert torch.equal(decoded["layer.weight"], tensor)
    assert torch.equal(decoded["bias"], torch.ones(3))


def test_tensors_without_zeros_stay_dense() -> None:
    stored = load_safetensors_bytes(encode_sparse({"bias": torch.tensor([1.0, 2.0])}))
    assert list(stored) == ["bias"]


def test_dense_size_is_the_baked_model_saved_with_safetensors() -> None:
    model, baked = _masked_model(), _masked_model()
    # a twin, not a deepcopy: baking a deepcopy of a parametrized module deletes the property
    # from the class it shares with the original (torch.nn.utils.parametrize)
    bake_masks(baked)
    assert dense_size_bytes(model) == len(safetensors.torch.save(baked.state_dict()))
    assert dense_size_bytes(model) == dense_size_bytes(baked)
    assert sparse_size_bytes(model) == sparse_size_bytes(baked)


def test_sparse_size_of_a_masked_model_is_smaller_and_the_model_unchanged() -> None:
    model = _masked_model()
    keys = list(model.state_dict())
    assert sparse_size_bytes(model) < dense_size_bytes(model)
    assert list(model.state_dict()) == keys
    assert is_masked(model, "0.weight")


def test_tied_weights_are_stored_once() -> None:
    first, second = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    assert dense_size_bytes(model) == len(encode_dense({"0.weight": first.weight}))


def test_decoding_something_else_is_refused() -> None:
    with pytest.raises(SaveFileError, match="not a prunekit-sparse-v2 blob"):
        decode_sparse(encode_dense({"w": torch.ones(2)}))
    with pytest.raises(SaveFileError, match="not a safetensors blob"):
        decode_sparse(b"\x01")
