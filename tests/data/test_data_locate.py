from pathlib import Path

import numpy as np
import pytest

from prunekit.data import (
    ENV_VAR,
    IDX_FILES,
    candidate_roots,
    find_dataset_files,
    load_mnist,
    write_idx,
)
from prunekit.data.locate import SYSTEM_ROOT
from prunekit.errors import ConfigError, DataError

TRAIN_FILES = IDX_FILES["train"]


def fake_split(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> Path:
    """Write an MNIST-style train split into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{TRAIN_FILES[0]}{suffix}", images)
    write_idx(folder / f"{TRAIN_FILES[1]}{suffix}", labels)
    return folder


def test_candidate_roots_order(tmp_path: Path) -> None:
    cwd = tmp_path / "work" / "repo"
    anchor = tmp_path / "site" / "prunekit" / "data" / "locate.py"
    roots = candidate_roots(env={ENV_VAR: "/env/data"}, cwd=cwd, anchor=anchor)
    assert roots[0] == Path("/env/data")
    assert roots[1:4] == [
        cwd / "shared" / "data",
        tmp_path / "work" / "shared" / "data",  # ../shared/data from the checkout
        tmp_path / "shared" / "data",
    ]
    assert tmp_path / "site" / "prunekit" / "shared" / "data" in roots
    assert roots[-1] == SYSTEM_ROOT
    assert len(roots) == len(set(roots))


def test_candidate_roots_without_env_var_start_at_cwd(tmp_path: Path) -> None:
    roots = candidate_roots(env={}, cwd=tmp_path, anchor=tmp_path / "pkg.py")
    assert roots[0] == tmp_path / "shared" / "data"


def test_first_root_holding_the_files_wins_and_raw_beats_gzip(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty", tmp_path / "full"
    (empty / "mnist").mkdir(parents=True)
    (full / "mnist").mkdir(parents=True)
    for name in TRAIN_FILES:
        (full / "mnist" / name).touch()
        (full / "mnist" / f"{name}.gz").touch()
    found = find_dataset_files("mnist", TRAIN_FILES, candidates=[empty, full])
    assert found == tuple(full / "mnist" / name for name in TRAIN_FILES)


def test_explicit_root_may_be_the_folder_of_files_itself(tmp_path: Path) -> None:
    for name in TRAIN_FILES:
        (tmp_path / f"{name}.gz").touch()
    found = find_dataset_files("mnist", TRAIN_FILES, tmp_path)
    assert found == tuple(tmp_path / f"{name}.gz" for name in TRAIN_FILES)


def test_not_found_lists_places_searched_and_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        find_dataset_files("mnist", TRAIN_FILES, candidates=[tmp_path / "a", tmp_path / "b"])
    message = str(info.value)
    assert str(tmp_path / "a" / "mnist") in message
    assert str(tmp_path / "b" / "mnist") in message
    assert "root=" in message and ENV_VAR in message


def test_a_half_present_split_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / TRAIN_FILES[0]).touch()
    with pytest.raises(DataError, match="cannot find the mnist files"):
        find_dataset_files("mnist", TRAIN_FILES, tmp_path)


def test_env_var_root_is_used_and_pixels_are_normalised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = np.array([[[0, 255], [51, 0]], [[255, 255], [0, 0]]], dtype=np.uint8)
    fake_split(tmp_path / "mnist", images, np.array([3, 9], dtype=np.uint8))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    x, y = load_mnist(split="train").tensors
    assert x.shape == (2, 1, 2, 2)
    assert y.tolist() == [3, 9]
    # (0 - 0.1307) / 0.3081 = -0.42421, (1 - 0.1307) / 0.3081 = 2.82149, (0.2 - 0.1307) / 0.3081
    assert x[0, 0].flatten().tolist() == pytest.approx(
        [-0.42421, 2.82149, 0.22493, -0.42421], abs=1e-5
    )


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    fake_split(tmp_path, np.zeros((2, 3, 3), np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"holds 2 images but .* holds 3 labels"):
        load_mnist(tmp_path, "train")


def test_labels_out_of_range_are_refused(tmp_path: Path) -> None:
    fake_split(tmp_path, np.zeros((2, 3, 3), np.uint8), np.array([1, 10], np.uint8), gz=False)
    with pytest.raises(DataError, match=r"holds label 10; mnist labels are 0\.\.9"):
        load_mnist(tmp_path, "train")


def test_split_passed_as_root_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match="call with split='test'"):
        load_mnist("test")  # type: ignore[arg-type]


def test_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split must be one of"):
        load_mnist(tmp_path, "validation")  # type: ignore[arg-type]
