"""weights=: safetensors, torch.save state dicts (plain or wrapped), Hugging Face directories;
strict loading that names the tensors that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from prunekit.models import build_model
from prunekit.sources import SourceError, check_fit, load_model, read_state_dict


def trained_lenet(seed: int = 1, **kwargs: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model("lenet-5", **kwargs).state_dict()


def assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert own.keys() == state.keys()
    assert all(torch.equal(own[name], state[name]) for name in state)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    state = trained_lenet()
    save_file(state, tmp_path / "lenet.safetensors")
    assert_loaded(load_model("lenet-5", weights=tmp_path / "lenet.safetensors").model, state)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_torch_save_round_trip(tmp_path: Path, wrapper: str | None) -> None:
    state = trained_lenet()
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, tmp_path / "w.pt")
    assert_loaded(load_model("lenet-5", weights=str(tmp_path / "w.pt")).model, state)


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path: Path) -> None:
    save_file(trained_lenet(num_classes=3), tmp_path / "three.safetensors")
    with pytest.raises(SourceError) as caught:
        load_model("lenet-5", weights=tmp_path / "three.safetensors")
    assert str(caught.value) == (
        f"weights '{tmp_path / 'three.safetensors'}' do not fit LeNet5: 2 shape mismatch(es): "
        "fc3.weight (model [10, 84], file [3, 84]), fc3.bias (model [10], file [3])"
    )


def test_missing_and_unexpected_tensors_are_named(tmp_path: Path) -> None:
    state = trained_lenet()
    state["extra.weight"] = torch.zeros(2, 2)
    del state["conv1.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(SourceError) as caught:
        load_model("lenet-5", weights=tmp_path / "w.pt")
    message = str(caught.value)
    assert "1 missing from the file: conv1.bias [6]" in message
    assert "1 not in the model: extra.weight [2, 2]" in message


def test_check_fit_accepts_an_exact_state() -> None:
    model = build_model("lenet-5")
    check_fit(model, model.state_dict(), "here")  # no error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2, 3], "holds list, not a state dict of tensors"),
        ({"fc.weight": 3}, "holds dict, not a state dict of tensors"),
    ],
)
def test_files_without_a_state_dict_are_refused(
    tmp_path: Path, content: object, message: str
) -> None:
    torch.save(content, tmp_path / "w.pt")
    with pytest.raises(SourceError, match=message):
        read_state_dict(tmp_path / "w.pt")


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "w.pt").write_bytes(b"not a torch file")
    with pytest.raises(SourceError, match="is not readable safetensors"):
        read_state_dict(tmp_path / "w.safetensors")
    with pytest.raises(SourceError, match=r"cannot be read by torch.load\(weights_only=True\)"):
        read_state_dict(tmp_path / "w.pt")


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="weights file '.*nope.pt' does not exist"):
        load_model("lenet-5", weights=tmp_path / "nope.pt")
    with pytest.raises(SourceError, match="holds no model.safetensors or pytorch_model.bin"):
        load_model("lenet-5", weights=tmp_path)
