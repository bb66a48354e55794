"""Calibration windows: seeded, fixed-length, from a file or a data set; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError, DataError
from prunekit.llm import calibration_windows, read_text, token_windows


class CharTokenizer:
    """One token per character (its code point), like a Hugging Face tokenizer's call."""

    def __call__(self, text: str, **_: object) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([[ord(c) for c in text]])}


def test_windows_are_seeded_slices_of_the_text() -> None:
    ids = torch.arange(100)
    a = token_windows(ids, n_samples=5, seq_len=10, seed=3)
    b = token_windows(ids, n_samples=5, seq_len=10, seed=3)
    assert a.shape == (5, 10)
    assert torch.equal(a, b)
    assert not torch.equal(a, token_windows(ids, n_samples=5, seq_len=10, seed=4))
    # every window is a run of consecutive tokens of the text
    assert torch.equal(a - a[:, :1], torch.arange(10).expand(5, 10))


def test_calibration_from_file_and_from_data_set(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 5)
    windows = calibration_windows(CharTokenizer(), path, n_samples=3, seq_len=8, seed=0)
    assert windows.shape == (3, 8)
    rows = [{"text": "abcdefghij"}, {"text": "klmnopqrst"}]
    from_rows = calibration_windows(CharTokenizer(), rows, n_samples=2, seq_len=4)
    assert from_rows.shape == (2, 4)
    assert read_text(["ab", "cd"]) == "ab\n\ncd"


def test_bad_calibration_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_text(empty)
    with pytest.raises(DataError, match="does not exist"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="fewer than one window"):
        token_windows(torch.arange(5), n_samples=1, seq_len=8)
    with pytest.raises(ConfigError):
        token_windows(torch.arange(50), n_samples=0, seq_len=8)
    with pytest.raises(DataError, match="'text' field"):
        read_text([1, 2])
