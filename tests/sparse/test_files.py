"""Compressed safetensors files: exact round trip of models and state dicts, size, atomic
writes, and clear errors for damaged or mismatched files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, SaveFileError
from prunekit.masks.parametrize import apply_masks
from prunekit.measure.effective import effective_state_dict
from prunekit.sparse import COMPRESSED_FORMAT, load_compressed, read_schema, save_compressed


def _mlp(width: int, sparsity: float) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
    g = torch.Generator().manual_seed(0)
    masks = {
        f"{i}.weight": (torch.rand(width, width, generator=g) >= sparsity).float() for i in (0, 2)
    }
    apply_masks(model, masks)
    return model


def test_masked_model_round_trips_and_loads_into_a_plain_model(tmp_path: Path) -> None:
    model = _mlp(64, 0.9)
    path = save_compressed(model, tmp_path / "m.safetensors")
    loaded = load_compressed(path, like=model)
    expected = effective_state_dict(model)
    assert sorted(loaded) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    plain = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    plain.load_state_dict(loaded)
    x = torch.randn(5, 64)
    assert torch.equal(plain(x), model(x))


def test_dense_tensors_stay_dense_and_bitwise(tmp_path: Path) -> None:
    state = {"w": torch.randn(8, 8), "steps": torch.tensor(7), "h": torch.randn(4).half()}
    path = save_compressed(state, tmp_path / "d.safetensors")
    assert read_schema(path).tensors == {}
    loaded = load_compressed(path)
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in state.items())


def test_ninety_percent_sparse_mlp_file_is_at_most_015_of_dense(tmp_path: Path) -> None:
    model = _mlp(1024, 0.9)
    dense = tmp_path / "dense.safetensors"
    safetensors.torch.save_file(effective_state_dict(model), dense)
    sparse = save_compressed(model, tmp_path / "sparse.safetensors")
    ratio = sparse.stat().st_size / dense.stat().st_size
    # bitmask 1/8 byte + 0.1 x 4 bytes per entry = 0.525 of 4 bytes: 0.131, plus row offsets
    assert 0.125 < ratio <= 0.15
    assert {e.format for e in read_schema(sparse).tensors.values()} == {"sparse-bitmask"}


def test_the_file_uses_compressed_tensors_part_names(tmp_path: Path) -> None:
    path = save_compressed(
        {"fc.weight": torch.where(torch.rand(64, 64) < 0.8, 0.0, 1.0)}, tmp_path / "f.safetensors"
    )
    keys = set(safetensors.torch.load_file(path))
    assert keys == {
        "fc.weight.bitmask",
        "fc.weight.compressed",
        "fc.weight.row_offsets",
        "fc.weight.shape",
    }
    with safetensors.safe_open(path, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["prunekit"] == COMPRESSED_FORMAT
    entry = json.loads(metadata["compression"])["tensors"]["fc.weight"]
    assert entry == {"format": "sparse-bitmask", "shape": [64, 64], "dtype": "float32"}


def test_tied_tensors_are_stored_once_and_come_back_tied(tmp_path: Path) -> None:
    shared = torch.where(torch.rand(32, 32) < 0.9, 0.0, torch.randn(32, 32))
    path = save_compressed(
        {"embed.weight": shared, "head.weight": shared}, tmp_path / "t.safetensors"
    )
    assert read_schema(path).aliases == {"head.weight": "embed.weight"}
    loaded = load_compressed(path)
    assert loaded["head.weight"] is loaded["embed.weight"]
    assert torch.equal(loaded["head.weight"], shared)


def test_save_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_compressed({"a": torch.ones(3)}, path)
    save_compressed({"b": torch.zeros(2)}, path)
    assert list(load_compressed(path)) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = save_compressed({"a": torch.ones(3)}, tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="'x' is on the meta device"):
        save_compressed({"x": torch.empty(2, device="meta")}, path)
    assert torch.equal(load_compressed(path)["a"], torch.ones(3))


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SaveFileError, match="is a directory"):
        save_compressed({"a": torch.ones(1)}, tmp_path)
    with pytest.raises(ConfigError, match="needs an nn.Module or a state dict, got list"):
        save_compressed([torch.ones(1)], tmp_path / "x")  # type: ignore[arg-type]


def test_a_tensor_whose_part_names_are_taken_is_stored_dense(tmp_path: Path) -> None:
    clash = {"w": torch.where(torch.rand(64, 64) < 0.9, 0.0, 1.0), "w.compressed": torch.ones(1)}
    path = save_compressed(clash, tmp_path / "x")
    assert read_schema(path).tensors == {}
    loaded = load_compressed(path)
    assert loaded.keys() == clash.keys()
    assert all(torch.equal(loaded[k], clash[k]) for k in clash)


def _saved(tmp_path: Path) -> Path:
    return save_compressed(_mlp(64, 0.9), tmp_path / "m.safetensors")


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01  # one flipped bit in the values
    path.write_bytes(bytes(blob))
    with pytest.raises(SaveFileError, match="checksum does not match; the file is damaged"):
        load_compressed(path)


def test_a_truncated_or_foreign_file_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(SaveFileError, match="not a safetensors file"):
        load_compressed(path)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"a": torch.ones(1)}, plain)
    with pytest.raises(SaveFileError, match="not a prunekit-compressed-v1 file"):
        load_compressed(plain)
    with pytest.raises(SaveFileError, match="no such file"):
        load_compressed(tmp_path / "missing.safetensors")


def _rewrite_metadata(path: Path, key: str, value: str) -> None:
    """Change one metadata entry, keeping the data and its checksum valid."""
    blob = path.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    header["__metadata__"][key] = value
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob[8 + length :])


def test_metadata_that_contradicts_the_parts_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with safetensors.safe_open(path, "pt") as handle:
        compression = json.loads(handle.metadata()["compression"])
    compression["tensors"]["0.weight"]["shape"] = [64, 32]
    _rewrite_metadata(path, "compression", json.dumps(compression))
    with pytest.raises(SaveFileError, match=r"tensor '0.weight': the shape part says \(64, 64\)"):
        load_compressed(path)
    compression["tensors"]["0.weight"]["format"] = "coo"
    _rewrite_metadata(path, "compression", json.dumps(compression))
    with pytest.raises(
        SaveFileError, match="bad compression metadata at 'tensors.0.weight.format'"
    ):
        load_compressed(path)


def test_a_model_of_another_shape_is_named(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    other = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))
    with pytest.raises(
        SaveFileError, match=r"'2.weight' has shape \(64, 64\) in the file, \(32, 64\)"
    ):
        load_compressed(path, like=other)
    with pytest.raises(
        SaveFileError, match=r"missing \['1.weight'\], unexpected \['2.bias', '2.weight'\]"
    ):
        load_compressed(path, like={"0.weight": torch.ones(64, 64), "0.bias": torch.ones(64),
                                    "1.weight": torch.ones(1)})  # fmt: skip


def test_float16_and_conv_weights_round_trip(tmp_path: Path) -> None:
    conv = torch.where(torch.rand(32, 16, 3, 3) < 0.9, 0.0, torch.randn(32, 16, 3, 3)).half()
    state: dict[str, Tensor] = {"conv.weight": conv}
    loaded = load_compressed(save_compressed(state, tmp_path / "c.safetensors"))
    assert read_schema(tmp_path / "c.safetensors").tensors["conv.weight"].format != "dense"
    assert loaded["conv.weight"].dtype == torch.float16
    assert torch.equal(loaded["conv.weight"].view(torch.int16), conv.view(torch.int16))
