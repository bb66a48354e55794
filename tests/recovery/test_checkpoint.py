"""Checkpoint files: atomic, checksummed, loaded without pickle, bound to their settings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError, SaveFileError
from prunekit.io.fingerprint import changed_fields, describe
from prunekit.recovery import load_checkpoint, save_checkpoint
from prunekit.recovery.checkpoint import MAGIC
from prunekit.schedules import Polynomial


def _state() -> dict[str, object]:
    return {"step": 7, "weights": torch.arange(4096, dtype=torch.float32), "names": ["a", "b"]}


def test_roundtrip_gives_back_the_values(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", _state(), config={"lr": 0.1})
    state = load_checkpoint(tmp_path / "c.pt", config={"lr": 0.1})
    assert state["step"] == 7 and state["names"] == ["a", "b"]
    assert torch.equal(state["weights"], torch.arange(4096, dtype=torch.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_64_flipped_bytes_are_refused(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for offset in rng.sample(range(len(MAGIC) + 72, len(data)), 64):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SaveFileError, match="sha256 of the checkpoint is .* the file is corrupt"):
        load_checkpoint(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SaveFileError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_a_plain_torch_save_file_is_refused_as_not_a_checkpoint(tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "c.pt")
    with pytest.raises(SaveFileError, match="not a prunekit checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


def test_changed_settings_are_refused_with_every_changed_field(tmp_path: Path) -> None:
    recorded = describe({"schedule": Polynomial(0.5, end=10), "lr": 0.1, "seed": 3})
    save_checkpoint(tmp_path / "c.pt", _state(), config=recorded)
    current = describe({"schedule": Polynomial(0.75, end=10), "lr": 0.1, "epochs": 2})
    with pytest.raises(ConfigError) as info:
        load_checkpoint(tmp_path / "c.pt", config=current)
    message = str(info.value)
    assert "schedule.final_sparsity: 0.5 -> 0.75" in message
    assert "seed: 3 -> <absent>" in message and "epochs: <absent> -> 2" in message
    assert "lr" not in message


def test_a_checkpoint_without_settings_is_refused_when_settings_are_checked(
    tmp_path: Path,
) -> None:
    save_checkpoint(tmp_path / "c.pt", _state())
    with pytest.raises(ConfigError, match="records no settings"):
        load_checkpoint(tmp_path / "c.pt", config={"lr": 0.1})


def test_pickled_objects_are_not_loaded(tmp_path: Path) -> None:
    with pytest.raises(SaveFileError, match="cannot read checkpoint"):
        save_checkpoint(tmp_path / "c.pt", {"obj": Polynomial(0.5, end=10)})
        load_checkpoint(tmp_path / "c.pt")


def test_reserved_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved key"):
        save_checkpoint(tmp_path / "c.pt", {"__config__": 1})


def test_changed_fields_treats_equal_numbers_and_nans_as_unchanged() -> None:
    assert changed_fields({"a": 1, "b": float("nan")}, {"a": 1.0, "b": float("nan")}) == []
    assert changed_fields({"a": True}, {"a": 1}) == ["a: True -> 1"]
