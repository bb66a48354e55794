"""Broken or mismatched saves raise SaveFileError naming the file and key, before any change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError, SaveFileError
from prunekit.io import load, read_metadata, save
from prunekit.io.atomic import sha256_of
from prunekit.masks import apply_masks

Snapshot = Any


@pytest.fixture
def target(make_mlp: Callable[..., nn.Module]) -> nn.Module:
    """The user's model a failed load must leave alone; it carries a mask of its own."""
    model = make_mlp(seed=99)
    apply_masks(model, {"fc2.weight": (torch.arange(24).reshape(3, 8) % 2).float()})
    return model


def _rewrite_json(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    file = directory / "prunekit.json"
    data = json.loads(file.read_text())
    edit(data)
    file.write_text(json.dumps(data))


def _expect_failure(
    directory: Path,
    model: nn.Module,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
    *patterns: str,
) -> SaveFileError:
    before = snapshot(model)
    with pytest.raises(SaveFileError) as info:
        load(directory, model)
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))
    assert_unchanged(before, model)
    return info.value


def test_missing_directory_and_files(tmp_path: Path, saved_masked: Path) -> None:
    with pytest.raises(SaveFileError, match="no such directory"):
        load(tmp_path / "nowhere", nn.Linear(1, 1))
    with pytest.raises(SaveFileError, match="is a file"):
        read_metadata(saved_masked / "prunekit.json")
    (saved_masked / "model.safetensors").unlink()
    with pytest.raises(SaveFileError, match=r"model\.safetensors: file not found"):
        load(saved_masked, nn.Linear(1, 1))
    (saved_masked / "prunekit.json").unlink()
    with pytest.raises(SaveFileError, match=r"prunekit\.json: file not found"):
        read_metadata(saved_masked)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[len(data) // 2 :], id="truncated"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), id="flipped-last-byte"),
        pytest.param(lambda data: data[:40] + bytes([data[40] ^ 0x01]) + data[41:], id="header"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_corrupt_weights_file(
    saved_masked: Path,
    target: nn.Module,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
    damage: Callable[[bytes], bytes],
) -> None:
    file = saved_masked / "model.safetensors"
    file.write_bytes(damage(file.read_bytes()))
    _expect_failure(saved_masked, target, snapshot, assert_unchanged, str(file), "sha256")


def test_unreadable_weights_with_matching_digest(
    saved_masked: Path,
    target: nn.Module,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
) -> None:
    file = saved_masked / "model.safetensors"
    file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    _rewrite_json(saved_masked, lambda d: d["weights"].update(sha256=sha256_of(file)))
    _expect_failure(saved_masked, target, snapshot, assert_unchanged, str(file), "safetensors")


def test_weights_file_missing_a_key(
    saved_masked: Path,
    target: nn.Module,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
) -> None:
    file = saved_masked / "model.safetensors"
    save_file({"fc1.weight": torch.zeros(8, 4)}, file)
    _rewrite_json(saved_masked, lambda d: d["weights"].update(sha256=sha256_of(file)))
    _expect_failure(saved_masked, target, snapshot, assert_unchanged, str(file), "'fc1.bias'")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"format": "prunekit.saved-model", "format_version": 1, "x": NaN}', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "something-else", "format_version": 1}', "not a file written by"),
        ('{"format": "prunekit.saved-model", "format_version": 4}', "newer prunekit"),
        ('{"format": "prunekit.saved-model", "format_version": "1"}', "format_version"),
    ],
)
def test_corrupt_or_foreign_json(
    saved_masked: Path,
    target: nn.Module,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
    text: str,
    pattern: str,
) -> None:
    (saved_masked / "prunekit.json").write_text(text)
    file = str(saved_masked / "prunekit.json")
    _expect_failure(saved_masked, target, snapshot, assert_unchanged, file, pattern)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda d: d["tensors"]["fc1.weight"].update(shape=[8, -4]), "tensors.fc1.weight.shape"),
        (lambda d: d["tensors"]["fc1.weight"].update(dtype="float99"), "tensors.fc1.weight.dtype"),
        (lambda d: d["weights"].update(sha256="abc"), "weights.sha256"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d["masks"]["fc1.weight"].update(shape=[4, 8]), "mask for 'fc1.weight'"),
        (lambda d: d.update(masked=["fc2.bias"]), "'masked'"),
        (lambda d: d["tensors"]["fc2.weight"].update(shape=[3, 9]), "key 'fc2.weight'"),
    ],
)
def test_invalid_metadata_fields(
    saved_masked: Path,
    target: nn.Module,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
    edit: Callable[[dict[str, Any]], None],
    pattern: str,
) -> None:
    _rewrite_json(saved_masked, edit)
    _expect_failure(saved_masked, target, snapshot, assert_unchanged, pattern)


def test_wrong_shapes_name_the_key_and_leave_the_model(
    saved_masked: Path,
    make_mlp: Callable[..., nn.Module],
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
) -> None:
    wider = make_mlp(4, 6, 3)
    apply_masks(wider, {"fc1.weight": torch.ones(6, 4)})
    error = _expect_failure(
        saved_masked, wider, snapshot, assert_unchanged, "model.safetensors", "'fc1.weight'"
    )
    assert "'fc1.weight' (file (8, 4), model (6, 4))" in str(error)
    assert "'fc1.bias' (file (8,), model (6,))" in str(error)


def test_other_architecture_names_missing_and_extra_keys(
    saved_masked: Path,
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
) -> None:
    deeper = nn.Sequential()
    deeper.add_module("fc1", nn.Linear(4, 8))
    deeper.add_module("fc2", nn.Linear(8, 3))
    deeper.add_module("fc3", nn.Linear(3, 3))
    _expect_failure(saved_masked, deeper, snapshot, assert_unchanged, "'fc3.weight'", "lacks")
    renamed = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    error = _expect_failure(saved_masked, renamed, snapshot, assert_unchanged, "'0.bias'")
    assert "'fc1.bias'" in str(error)


def test_dtype_mismatch(
    saved_masked: Path,
    make_mlp: Callable[..., nn.Module],
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
) -> None:
    double = make_mlp().double()
    error = _expect_failure(saved_masked, double, snapshot, assert_unchanged, "dtype")
    assert "'fc1.weight' (file float32, model float64)" in str(error)


class _Scale(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 2 * x


def test_other_parametrizations_are_refused(
    tmp_path: Path,
    saved_masked: Path,
    make_mlp: Callable[..., nn.Module],
    snapshot: Callable[[nn.Module], Snapshot],
    assert_unchanged: Callable[[Snapshot, nn.Module], None],
) -> None:
    model = make_mlp()
    parametrize.register_parametrization(model.fc1, "weight", _Scale())
    with pytest.raises(ConfigError, match="_Scale"):
        save(model, tmp_path / "scaled")
    assert not (tmp_path / "scaled").exists()
    _expect_failure(saved_masked, model, snapshot, assert_unchanged, "_Scale", "'fc1.weight'")


def test_save_refuses_bad_arguments(tmp_path: Path, masked_mlp: nn.Module) -> None:
    with pytest.raises(ConfigError, match="extra must be JSON"):
        save(masked_mlp, tmp_path / "a", extra={"t": torch.ones(1)})
    with pytest.raises(ConfigError, match="plan must be JSON"):
        save(masked_mlp, tmp_path / "a", plan={"x": float("nan")})
    with pytest.raises(ConfigError, match="arch"):
        save(masked_mlp, tmp_path / "a", arch={"kwargs": {}})
    with pytest.raises(ConfigError, match="complex64"):
        complex_state = nn.Module()
        complex_state.register_buffer("z", torch.zeros(2, dtype=torch.complex64))
        save(complex_state, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SaveFileError, match="not a directory"):
        save(masked_mlp, tmp_path / "file")


def test_no_arch_and_no_model(saved_masked: Path) -> None:
    with pytest.raises(SaveFileError, match="no 'arch' recorded"):
        load(saved_masked)


def test_unknown_arch_is_named(tmp_path: Path, masked_mlp: nn.Module) -> None:
    pytest.importorskip("prunekit.models")
    save(masked_mlp, tmp_path / "u", arch={"model": "no-such-net"})
    with pytest.raises(SaveFileError, match="no-such-net"):
        load(tmp_path / "u")
