"""Sizes on disk computed from names, dtypes, shapes and nonzero counts equal the lengths of
the blobs that safetensors really writes."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from torch import nn

from prunekit.errors import SaveFileError
from prunekit.measure import dense_size_bytes, encode_dense, encode_sparse, sparse_size_bytes
from prunekit.measure.effective import effective_state_dict
from prunekit.measure.size import safetensors_size


def test_hand_worked_header_and_data_length() -> None:
    # header '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' is 55 bytes, padded to
    # 56; the data is 2 * 4 bytes: 8 + 56 + 8 = 72
    assert safetensors_size([("a", torch.float32, (2,))]) == 72
    assert len(encode_dense({"a": torch.zeros(2)})) == 72


def test_mixed_dtypes_scalars_empty_tensors_and_metadata_match_real_blobs() -> None:
    tensors = {
        "b.w": torch.randn(3, 4),
        "a": torch.arange(2),
        "c": torch.randn(5).half(),
        "d": torch.ones(1, dtype=torch.bool),
        "e": torch.randn(2).bfloat16(),
        "f": torch.randn(2).double(),
        "g": torch.tensor(7),
        "h": torch.zeros(0),
        "é": torch.ones(3, dtype=torch.uint8),
    }
    specs = [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    assert safetensors_size(specs) == len(encode_dense(tensors))
    metadata = {"format": "x", "quote": 'a"b\\c'}
    assert safetensors_size(specs, metadata) == len(safetensors.torch.save(tensors, metadata))


def test_model_sizes_dense_and_sparse_match_the_encoders() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Flatten(), nn.Linear(16 * 36, 10)
    )
    model[3].weight = model[3].weight  # the same parameter twice is stored once
    with torch.no_grad():
        model[3].weight.mul_((torch.rand_like(model[3].weight) > 0.9).float())  # 90% zeros
    state = effective_state_dict(model)
    assert dense_size_bytes(model) == len(encode_dense(state))
    assert sparse_size_bytes(model) == len(encode_sparse(state))
    assert sparse_size_bytes(model) < dense_size_bytes(model)


def test_a_dtype_safetensors_cannot_store_is_named() -> None:
    with pytest.raises(SaveFileError, match=r"dtype torch.complex128 \(tensors \['z'\]\)"):
        safetensors_size([("z", torch.complex128, (2,)), ("a", torch.float32, (1,))])
