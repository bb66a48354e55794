"""Format version 3: sparse tensors are stored compressed, masks implied by zeros are left out,
and saves of the older versions still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from torch import Tensor, nn

from prunekit.errors import SaveFileError
from prunekit.io import load, read_metadata, save
from prunekit.io.atomic import sha256_of
from prunekit.masks import apply_masks, masks_of
from prunekit.measure import effective_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "v2_masked_twins"
"""A save written by the version 2 code (every tensor dense, masks stored as bool): two
``Linear(4, 4)``, weights ``arange(1, 17)`` and its negative, biases ``[0.5, -0.5, 0, 1]``,
masks ``eye(4)`` on the first and ``1 - eye(4)`` on the second."""


def _keys(directory: Path) -> dict[str, str]:
    with safe_open(directory / "model.safetensors", framework="pt") as f:
        return {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118


def _sparse_mlp(width: int = 256, sparsity: float = 0.9, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
    gen = torch.Generator().manual_seed(seed + 1)
    masks = {
        f"{i}.weight": (torch.rand(width, width, generator=gen) >= sparsity).float() for i in (0, 2)
    }
    apply_masks(model, masks)
    return model


def _fresh(width: int = 256) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))


def _assert_same_state(loaded: nn.Module, saved: nn.Module) -> None:
    got, want = effective_state_dict(loaded), effective_state_dict(saved)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    got_masks, want_masks = masks_of(loaded), masks_of(saved)
    assert got_masks.keys() == want_masks.keys()
    assert all(torch.equal(got_masks[k], want_masks[k]) for k in want_masks)


def test_a_ninety_percent_sparse_save_is_small_and_loads_exactly(tmp_path: Path) -> None:
    model = _sparse_mlp()
    directory = save(model, tmp_path / "m")
    dense = tmp_path / "dense.safetensors"
    safetensors.torch.save_file(effective_state_dict(model), dense)
    ratio = (directory / "model.safetensors").stat().st_size / dense.stat().st_size
    # per weight: 1/8 byte of bitmask + 0.1 x 4 bytes of values = 0.525 of 4 bytes -> 0.13
    assert ratio <= 0.15
    assert {m.encoding for m in read_metadata(directory).masks.values()} == {"implied"}
    assert read_metadata(directory).tensors["0.weight"].encoding == "sparse-bitmask"
    assert set(_keys(directory)) == {
        *(
            f"{i}.weight.{p}"
            for i in (0, 2)
            for p in ("bitmask", "compressed", "row_offsets", "shape")
        ),
        "0.bias",
        "2.bias",
    }
    loaded = load(directory, _fresh())
    _assert_same_state(loaded, model)
    x = torch.randn(3, 256)
    assert torch.equal(loaded(x), model(x))


def test_stored_values_come_back_bit_for_bit_and_minus_zero_as_zero(tmp_path: Path) -> None:
    weight = torch.zeros(64, 64)
    weight[::7, ::5] = (
        torch.tensor([float("nan"), -1.5, 3.0e-42, 2.0]).repeat(144)[:130].reshape(10, 13)
    )
    weight[1, 1] = -0.0
    model = nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    directory = save(model, tmp_path / "m")
    assert read_metadata(directory).tensors["weight"].encoding != "dense"
    target = nn.Linear(64, 64, bias=False)
    load(directory, target)
    loaded = target.weight.detach()
    expected = weight.clone()
    expected[1, 1] = 0.0
    assert torch.equal(loaded.view(torch.int32), expected.view(torch.int32))


def test_block_sparse_weights_are_stored_as_block_csr(tmp_path: Path) -> None:
    tiles = (torch.arange(16 * 16).reshape(16, 16) % 10 == 0).float()
    mask = tiles.repeat_interleave(16, 0).repeat_interleave(16, 1)
    model = nn.Linear(256, 256, bias=False)
    apply_masks(model, {"weight": mask})
    directory = save(model, tmp_path / "m")
    record = read_metadata(directory).tensors["weight"]
    assert (record.encoding, record.blocksize) == ("sparse-bsr", (16, 16))
    _assert_same_state(load(directory, nn.Linear(256, 256, bias=False)), model)


def test_tied_sparse_weights_and_soft_masks_round_trip(tmp_path: Path) -> None:
    first, second = nn.Linear(64, 64), nn.Linear(64, 64)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    soft = torch.where(torch.rand(64) < 0.9, 0.0, 0.5)
    apply_masks(model, {"0.weight": (torch.rand(64, 64) > 0.9).float(), "1.bias": soft})
    directory = save(model, tmp_path / "m")
    target = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    target[1].weight = target[0].weight
    loaded = load(directory, target)
    _assert_same_state(loaded, model)
    assert read_metadata(directory).masks["1.bias"].dtype == "float32"


def _edit_json(directory: Path, edit: Any) -> None:
    file = directory / "prunekit.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    edit(data)
    file.write_text(json.dumps(data), encoding="utf-8")


def test_a_damaged_sparse_part_is_refused_with_its_tensor_named(tmp_path: Path) -> None:
    directory = save(_sparse_mlp(64), tmp_path / "m")
    weights = directory / "model.safetensors"
    stored = safetensors.torch.load_file(weights)
    stored["2.weight.shape"][0] += 1
    safetensors.torch.save_file(stored, weights)
    _edit_json(directory, lambda data: data["weights"].update(sha256=sha256_of(weights)))
    with pytest.raises(SaveFileError, match=r"tensor '2\.weight': the shape part says \(65, 64\)"):
        load(directory, _fresh(64))


def test_an_implied_mask_under_another_key_is_refused(tmp_path: Path) -> None:
    directory = save(_sparse_mlp(64), tmp_path / "m")
    _edit_json(directory, lambda data: data["masks"]["0.weight"].update(key="__mask__/2.weight"))
    with pytest.raises(SaveFileError, match=r"implied mask of '0\.weight' has key"):
        load(directory, _fresh(64))


def test_an_encoding_in_a_version_2_file_is_refused(tmp_path: Path) -> None:
    directory = save(_sparse_mlp(64), tmp_path / "m")
    _edit_json(directory, lambda data: data.update(format_version=2))
    with pytest.raises(SaveFileError, match="format_version 2 stores every tensor dense"):
        load(directory, _fresh(64))


def _twins() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))


def _expected_twins() -> dict[str, Tensor]:
    weight = torch.arange(1.0, 17.0).reshape(4, 4)
    bias = torch.tensor([0.5, -0.5, 0.0, 1.0])
    return {
        "0.weight": weight * torch.eye(4),
        "1.weight": -weight * (1 - torch.eye(4)),
        "0.bias": bias,
        "1.bias": bias,
    }


@pytest.mark.parametrize("version", [1, 2])
def test_saves_of_older_versions_still_load(tmp_path: Path, version: int) -> None:
    directory = tmp_path / "old"
    shutil.copytree(FIXTURE, directory)
    assert read_metadata(directory).format_version == 2
    if version == 1:

        def downgrade(data: dict[str, Any]) -> None:
            data["format_version"] = 1
            for section in ("tensors", "masks", "originals"):
                for record in data[section].values():
                    del record["sha256"]

        _edit_json(directory, downgrade)
    loaded = load(directory, _twins())
    state = effective_state_dict(loaded)
    for name, value in _expected_twins().items():
        assert torch.equal(state[name], value), name
    assert torch.equal(masks_of(loaded)["0.weight"], torch.eye(4))
    assert torch.equal(masks_of(loaded)["1.weight"], 1 - torch.eye(4))


def test_a_packed_mask_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    model = nn.Linear(16, 4, bias=False)
    with torch.no_grad():
        model.weight[0, 0] = 0.0  # kept but zero: the mask is stored
    apply_masks(model, {"weight": (torch.arange(64).reshape(4, 16) % 3 != 1).float()})
    directory = save(model, tmp_path / "m")
    assert read_metadata(directory).masks["weight"].encoding == "packed-bits"
    weights = directory / "model.safetensors"
    stored = safetensors.torch.load_file(weights)
    assert stored["__mask__/weight"].shape == (4, 2)  # 16 entries a row -> 2 bytes
    stored["__mask__/weight"] = torch.zeros(4, 3, dtype=torch.uint8)
    safetensors.torch.save_file(stored, weights)
    _edit_json(directory, lambda data: data["weights"].update(sha256=sha256_of(weights)))
    with pytest.raises(
        SaveFileError, match=r"mask of 'weight': packed bits are torch.uint8 \(4, 3\)"
    ):
        load(directory, nn.Linear(16, 4, bias=False))
