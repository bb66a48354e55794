"""Entries swapped between two same-shaped tensors are refused on load, wherever the swap is."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.errors import SaveFileError
from prunekit.io import load, save
from prunekit.io.atomic import sha256_of
from prunekit.masks import apply_masks, masks_of

Json = dict[str, Any]


def _twins(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))


def _saved(tmp_path: Path) -> Path:
    """Two masked twins whose masks are stored (a kept weight is exactly zero, so the mask is
    not implied by the zeros)."""
    model = _twins()
    params = dict(model.named_parameters())
    with torch.no_grad():
        params["0.weight"][0, 0] = 0.0
        params["1.weight"][0, 1] = 0.0
    apply_masks(model, {"0.weight": torch.eye(4), "1.weight": 1 - torch.eye(4)})
    return save(model, tmp_path / "m")


def _edit_json(directory: Path, edit: Callable[[Json], None]) -> None:
    file = directory / "prunekit.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    edit(data)
    file.write_text(json.dumps(data), encoding="utf-8")


def _swap_keys(section: str) -> Callable[[Json], None]:
    def edit(data: Json) -> None:
        a, b = data[section]["0.weight"], data[section]["1.weight"]
        a["key"], b["key"] = b["key"], a["key"]

    return edit


def _swap_records(data: Json) -> None:
    tensors = data["tensors"]
    tensors["0.weight"], tensors["1.weight"] = tensors["1.weight"], tensors["0.weight"]


@pytest.mark.parametrize(
    "edit",
    [_swap_keys("tensors"), _swap_keys("masks"), _swap_records],
    ids=["keys", "masks", "records"],
)
def test_swapped_entries_in_the_json_are_refused(
    tmp_path: Path, edit: Callable[[Json], None]
) -> None:
    directory = _saved(tmp_path)
    _edit_json(directory, edit)
    with pytest.raises(SaveFileError, match="not the ones saved under that name"):
        load(directory, _twins(1))


def test_swapped_tensors_in_the_weights_file_with_its_digest_updated_are_refused(
    tmp_path: Path,
) -> None:
    directory = _saved(tmp_path)
    weights = directory / "model.safetensors"
    tensors = load_file(weights)
    tensors["0.weight"], tensors["1.weight"] = tensors["1.weight"], tensors["0.weight"]
    save_file(tensors, weights)
    _edit_json(directory, lambda data: data["weights"].update(sha256=sha256_of(weights)))
    with pytest.raises(SaveFileError, match=r"'0\.weight', '1\.weight' are not the ones saved"):
        load(directory, _twins(1))


def test_unswapped_save_loads_the_same_values(tmp_path: Path) -> None:
    loaded = load(_saved(tmp_path), _twins(1))
    assert torch.equal(masks_of(loaded)["0.weight"], torch.eye(4))
    expected = dict(_twins().named_parameters())["0.weight"] * torch.eye(4)
    expected[0, 0] = 0.0
    assert torch.equal(loaded[0].weight, expected)


def test_a_version_2_save_missing_a_digest_is_refused(tmp_path: Path) -> None:
    directory = _saved(tmp_path)
    _edit_json(directory, lambda data: data["tensors"]["1.bias"].pop("sha256"))
    with pytest.raises(SaveFileError, match=r"no sha256 recorded for 1\.bias"):
        load(directory, _twins(1))
