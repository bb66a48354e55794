"""load_data: built-in names, image folders of real photographs and real MNIST digits, npz, text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Subset

from prunekit.errors import ConfigError
from prunekit.sources import (
    ModelSource,
    SourceError,
    data_families,
    example_from_shape,
    load_data,
    load_model,
    parse_shape,
)
from prunekit.sources.transforms import IMAGENET_MEAN, IMAGENET_STD

from .conftest import mnist_pixels

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare/input.txt")


def all_targets(loader: torch.utils.data.DataLoader) -> list[int]:  # type: ignore[type-arg]
    return [int(t) for _, targets in loader for t in targets]


def test_builtin_digits_with_a_reference_model() -> None:
    model = load_model("lenet-5", kwargs={"in_size": 8})
    data = load_data("digits", model=model, batch_size=16, limit=40)
    assert (data.num_classes, data.spec) == (10, "digits")
    assert data.example_inputs.shape == (1, 1, 8, 8)
    assert len(data.train.dataset) == len(data.test.dataset) == 40  # type: ignore[arg-type]
    inputs, targets = next(iter(data.train))
    assert inputs.shape == (16, 1, 8, 8) and targets.dtype == torch.int64
    assert model.model(data.example_inputs).shape == (1, 10)


@pytest.fixture(scope="module")
def resnet18() -> ModelSource:
    return load_model("torchvision:resnet18", kwargs={"num_classes": 3})


def test_photo_folder_with_torchvision_transform(photo_folder: Path, resnet18: ModelSource) -> None:
    model = resnet18
    data = load_data(f"imagefolder:{photo_folder}", model=model, batch_size=8)
    # classes of 2, 2 and 3 photographs: round(0.2 n) clipped to >= 1 each -> 1 + 1 + 1 held out
    assert data.num_classes == 3
    assert sorted(all_targets(data.test)) == [0, 1, 2]
    assert sorted(all_targets(data.train)) == [0, 1, 2, 2]
    assert data.example_inputs.shape == (1, 3, 224, 224)
    assert next(iter(data.train))[0].shape == (4, 3, 224, 224)
    with torch.no_grad():
        assert model.model(data.example_inputs).shape == (1, 3)


def test_grey_photo_becomes_three_equal_channels(photo_folder: Path, resnet18: ModelSource) -> None:
    data = load_data(f"imagefolder:{photo_folder}", model=resnet18)
    subset = data.train.dataset
    assert isinstance(subset, Subset)
    folder = subset.dataset
    index = next(i for i, (path, _) in enumerate(folder.samples) if path.endswith("camera.png"))
    image = folder[index][0]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = image * std + mean  # undo the normalisation
    assert torch.allclose(pixels[0], pixels[1], atol=1e-6)
    assert torch.allclose(pixels[1], pixels[2], atol=1e-6)


def test_split_is_fixed_by_seed(photo_folder: Path) -> None:
    def held_out(seed: int) -> list[int]:
        data = load_data(f"imagefolder:{photo_folder}", seed=seed)
        return sorted(data.test.dataset.indices)  # type: ignore[attr-defined]

    assert held_out(0) == held_out(0)
    assert any(held_out(0) != held_out(seed) for seed in (1, 2, 3))


def test_mnist_digits_folder_keeps_the_pixels(mnist_folder: Path, mnist_test) -> None:  # type: ignore[no-untyped-def]
    model = load_model("lenet-5")  # expects 1 x 28 x 28: no resize, grey kept
    data = load_data(f"imagefolder:{mnist_folder}", model=model, batch_size=64)
    assert data.num_classes == 3
    # ten per class: 2 held out each
    assert sorted(all_targets(data.test)) == [0, 0, 1, 1, 2, 2]
    assert len(all_targets(data.train)) == 24
    folder = data.train.dataset.dataset  # type: ignore[attr-defined]
    path, label = folder.samples[0]
    index = int(Path(path).stem.split("-")[1])
    expected = torch.from_numpy(mnist_pixels(mnist_test.tensors[0][index : index + 1])[0]) / 255.0
    assert label == int(mnist_test.tensors[1][index]) == 0
    assert torch.allclose(folder[0][0][0], expected, atol=1e-6)
    assert data.example_inputs.shape == (1, 1, 28, 28)


def test_folder_without_a_model_is_224_rgb(mnist_folder: Path) -> None:
    data = load_data(f"imagefolder:{mnist_folder}")
    assert data.example_inputs.shape == (1, 3, 224, 224)


def test_npz_real_digits_split_by_class(tmp_path: Path) -> None:
    digits = load_digits()
    # the first 20 digits are 0..9 twice: one of each class is held out
    assert digits.target[:20].tolist() == list(range(10)) * 2
    np.savez(tmp_path / "d.npz", x=digits.images[:20], y=digits.target[:20])
    data = load_data(f"npz:{tmp_path / 'd.npz'}", batch_size=32)
    assert data.num_classes == 10
    assert sorted(all_targets(data.test)) == list(range(10))
    assert sorted(all_targets(data.train)) == list(range(10))
    inputs, targets = next(iter(data.train))
    assert inputs.dtype == torch.float32 and targets.dtype == torch.int64
    assert data.example_inputs.shape == (1, 8, 8)
    rows = {tuple(row.flatten().tolist()) for row in digits.images[:20].astype(np.float32)}
    assert tuple(data.example_inputs[0].flatten().tolist()) in rows


def test_npz_first_two_arrays_and_given_split(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", inputs=np.ones((5, 2)), labels=np.array([0, 1, 0, 1, 2.0]))
    assert load_data(f"npz:{tmp_path / 'a.npz'}").num_classes == 3
    np.savez(
        tmp_path / "s.npz",
        x_train=np.zeros((3, 2)),
        y_train=np.array([0, 1, 1]),
        x_test=np.zeros((1, 2)),
        y_test=np.array([3]),
    )
    data = load_data(f"npz:{tmp_path / 's.npz'}")
    assert (all_targets(data.test), data.num_classes) == ([3], 4)


def test_text_blocks_for_language_modelling(tiny_bert_with_tokenizer: Path, tmp_path: Path) -> None:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} not found")
    text = SHAKESPEARE.read_text()[:4000]
    (tmp_path / "t.txt").write_text(text)
    model = load_model(f"hf:{tiny_bert_with_tokenizer}")
    ids = model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    blocks = len(ids) // 128
    held = round(blocks * 0.2)
    data = load_data(f"text:{tmp_path / 't.txt'}", model=model, batch_size=2)
    assert data.num_classes is None
    assert len(data.train.dataset) == blocks - held  # type: ignore[arg-type]
    assert len(data.test.dataset) == held  # type: ignore[arg-type]
    assert data.example_inputs.tolist() == [ids[:128]]
    inputs, labels = next(iter(data.test))
    assert torch.equal(inputs, labels)
    assert inputs[0].tolist() == ids[(blocks - held) * 128 : (blocks - held + 1) * 128]


def test_text_errors(tiny_bert_with_tokenizer: Path, tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("To be, or not to be: that is the question.")
    with pytest.raises(SourceError, match="text data needs a model with a tokenizer"):
        load_data(f"text:{tmp_path / 'short.txt'}", model=load_model("lenet-5"))
    model = load_model(f"hf:{tiny_bert_with_tokenizer}")
    with pytest.raises(SourceError, match=r"\d+ tokens make 0 block\(s\) of 128; .* at least 256"):
        load_data(f"text:{tmp_path / 'short.txt'}", model=model)
    with pytest.raises(SourceError, match="no such file"):
        load_data(f"text:{tmp_path / 'none.txt'}", model=model)


def test_example_from_shape() -> None:
    example = example_from_shape("1x3x4x5")
    assert example.shape == (1, 3, 4, 5) and example.dtype == torch.float32
    assert torch.equal(example, example_from_shape((1, 3, 4, 5)))  # same seed, same values
    assert torch.equal(
        example_from_shape("1,8", dtype=torch.long), torch.zeros(1, 8, dtype=torch.long)
    )
    assert parse_shape("(1, 3, 224, 224)") == (1, 3, 224, 224)
    with pytest.raises(SourceError, match="not a list of positive integers"):
        parse_shape("1x0x2")
    with pytest.raises(SourceError, match="not a list of positive integers"):
        parse_shape("axb")


def test_families_list_builtins_and_prefixes() -> None:
    names = [name for name, _ in data_families()]
    assert {"mnist", "fashion-mnist", "digits", "imagefolder", "npz", "text"} == set(names)


@pytest.mark.parametrize(
    ("make", "spec", "message"),
    [
        (None, "imagefolder:{tmp}/none", r"imagefolder:.*/none: no such directory"),
        ("empty", "imagefolder:{tmp}/empty", r"imagefolder:.*/empty: no images found in"),
        ("classes", "imagefolder:{tmp}/classes", r"imagefolder:.*/classes: no images found in"),
        ("one", "imagefolder:{tmp}/one", r"1 sample\(s\); a train and a held-out split need"),
        (None, "npz:{tmp}/none.npz", r"npz:.*/none.npz: no such file"),
        ("npz1", "npz:{tmp}/one.npz", r"holds 1 array\(s\) \(x\); it needs inputs 'x' and labels"),
        ("npzf", "npz:{tmp}/float.npz", r"labels must be integers"),
        ("npzlen", "npz:{tmp}/len.npz", r"3 inputs but 2 labels"),
        (
            None,
            "imgfolder:{tmp}",
            r"unknown data spec prefix 'imgfolder'.*did you mean 'imagefolder'",
        ),
        (None, "mnits", r"unknown data 'mnits' \(did you mean 'mnist'\?\)"),
        (None, " ", r"a data spec must be a non-empty string"),
    ],
)
def test_data_errors(tmp_path: Path, make: str | None, spec: str, message: str) -> None:
    if make == "empty":
        (tmp_path / "empty").mkdir()
    elif make == "classes":
        (tmp_path / "classes" / "cat").mkdir(parents=True)
        (tmp_path / "classes" / "cat" / "notes.txt").write_text("no image")
    elif make == "one":
        from PIL import Image

        (tmp_path / "one" / "a").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "one" / "a" / "x.png")
    elif make == "npz1":
        np.savez(tmp_path / "one.npz", x=np.zeros(3))
    elif make == "npzf":
        np.savez(tmp_path / "float.npz", x=np.zeros((2, 2)), y=np.array([0.5, 1.0]))
    elif make == "npzlen":
        np.savez(tmp_path / "len.npz", x=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.raises(SourceError, match=message) as caught:
        load_data(spec.format(tmp=tmp_path))
    assert "\n" not in str(caught.value) and isinstance(caught.value, ConfigError)


def test_channel_mismatch_is_refused(resnet18: ModelSource) -> None:
    with pytest.raises(SourceError) as caught:
        load_data("digits", model=resnet18, limit=4)
    assert str(caught.value) == (
        "data 'digits' gives inputs 1x1x8x8 but model 'torchvision:resnet18' expects "
        "1x3x224x224: 1 channels, not 3"
    )


def test_bad_batch_size_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="batch_size must be a positive integer"):
        load_data("digits", batch_size=0)
