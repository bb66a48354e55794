"""``prunekit prune`` and ``prunekit inspect`` on the user's own models (torchvision, timm,
Hugging Face, reference models) and data (an image folder of real photographs or MNIST digits),
and a one-line error with exit status 2 for every bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import prunekit
from prunekit.cli.main import app
from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.data import load_dataset
from prunekit.errors import DataError
from prunekit.io import read_metadata

runner = CliRunner()

#: skimage.data photographs per class folder: 2, 2 and 3 images (two of them greyscale).
#: Keeps a run small: a few images, one calibration batch, no fine-tuning or dense training.
SMALL = ["--data-limit", "4", "--batch-size", "2", "--set", "n_batches=1"]
SMALL += ["--finetune-epochs", "0", "--train-epochs", "0"]


@pytest.fixture(scope="module")
def mnist_folder(
    tmp_path_factory: pytest.TempPathFactory, save_png: Callable[[np.ndarray, Path], None]
) -> Path:
    """The first five real MNIST test digits of each class 0, 1, 2 as 28x28 grey PNGs."""
    try:
        images, labels = load_dataset("mnist", "test").tensors
    except DataError as error:
        pytest.skip(f"mnist test data not found (set PRUNEKIT_DATA): {error}")
    pixels = ((images[:, 0] * 0.3081 + 0.1307) * 255.0).round().clamp(0, 255).to(torch.uint8)
    root = tmp_path_factory.mktemp("mnist-png")
    for digit in (0, 1, 2):
        for rank, index in enumerate((labels == digit).nonzero().flatten()[:5].tolist()):
            save_png(pixels[index].numpy(), root / str(digit) / f"{rank}-{index}.png")
    return root


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, width-32 ViTForImageClassification on 32x32 images, 3 labels."""
    ensure_torchvision_ops()
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=3,
    )  # fmt: skip
    directory = tmp_path_factory.mktemp("tiny-vit")
    transformers.ViTForImageClassification(config).save_pretrained(directory)
    return directory


def prune_ok(args: list[str]) -> str:
    result = runner.invoke(app, ["prune", *args])
    assert result.exit_code == 0, result.output
    assert "dense vs one-shot pruned" in result.output and "MACs" in result.output
    return result.output


def assert_outputs(out: Path, example: torch.Tensor) -> nn.Module:
    """The run wrote the model and the report, and the saved model rebuilds and runs."""
    assert (out / "report.html").stat().st_size > 1000
    model = prunekit.load(out / "model").eval()
    with torch.no_grad():
        logits = model(example)
    assert logits.shape[0] == example.shape[0] and bool(torch.isfinite(logits).all())
    return model


@pytest.mark.slow  # ResNet-18 at 224x224: the run times both models (no CLI switch to skip it)
def test_torchvision_resnet18_on_photographs_to_half_its_macs(
    photo_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--model", "torchvision:resnet18", "--data", f"imagefolder:{photo_folder}"]
    args += ["--granularity", "channel", "--target", "macs=0.5", *SMALL, "--out", str(out)]
    prune_ok(args)
    model = assert_outputs(out, torch.randn(2, 3, 224, 224))
    assert read_metadata(out / "model").arch == {"model": "torchvision:resnet18", "kwargs": {}}
    conv1 = model.get_submodule("conv1")
    assert isinstance(conv1, nn.Conv2d) and conv1.out_channels < 64


def test_torchvision_mobilenet_on_photographs(photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--model", "torchvision:mobilenet_v3_small", "--data", f"imagefolder:{photo_folder}"]
    args += ["--granularity", "channel", "--sparsity", "0.3", *SMALL, "--out", str(out)]
    prune_ok(args)
    dense = prunekit.sources.load_model("torchvision:mobilenet_v3_small").model
    model = assert_outputs(out, torch.randn(2, 3, 224, 224))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) < count(dense)


def test_timm_model_on_photographs(photo_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("timm")
    out = tmp_path / "out"
    args = ["--model", "timm:mobilenetv3_small_050", "--data", f"imagefolder:{photo_folder}"]
    args += ["--granularity", "channel", "--sparsity", "0.3", *SMALL, "--out", str(out)]
    prune_ok(args)
    assert_outputs(out, torch.randn(2, 3, 224, 224))


def test_reference_lenet5_on_an_mnist_image_folder_runs(mnist_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--model", "lenet-5", "--data", f"imagefolder:{mnist_folder}"]
    args += ["--granularity", "channel", "--sparsity", "0.5", *SMALL, "--out", str(out)]
    prune_ok(args)
    arch = read_metadata(out / "model").arch or {}
    kwargs = arch.get("kwargs", {})
    side = int(kwargs.get("in_size", 28))
    assert_outputs(out, torch.randn(2, int(kwargs.get("in_channels", 1)), side, side))


def test_reference_lenet5_keeps_its_own_input_shape_on_an_mnist_folder(
    mnist_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--model", "lenet-5", "--data", f"imagefolder:{mnist_folder}"]
    args += ["--granularity", "channel", "--sparsity", "0.5", *SMALL, "--out", str(out)]
    prune_ok(args)
    arch = read_metadata(out / "model").arch or {}
    assert arch["kwargs"]["in_channels"] == 1 and arch["kwargs"]["in_size"] == 28


def test_hugging_face_image_classifier_from_a_directory(
    tiny_vit_dir: Path, photo_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--model", f"hf:{tiny_vit_dir}", "--data", f"imagefolder:{photo_folder}"]
    args += ["--granularity", "channel", "--sparsity", "0.3", *SMALL, "--out", str(out)]
    prune_ok(args)
    model = prunekit.load(out / "model").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).logits.shape == (2, 3)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("torchvision:resnet18", ["conv1", "layer1.0.conv1"]),
        ("lenet-5", ["conv1", "fc1"]),
    ],
)
def test_inspect_prints_the_groups(spec: str, words: list[str]) -> None:
    result = runner.invoke(app, ["inspect", spec])
    assert result.exit_code == 0, result.output
    for word in words:
        assert word in result.output


class ErrorText:
    """A CLI error compared without whitespace: rich wraps long lines at the terminal width,
    even inside a word such as a path."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.squeezed = "".join(output.split())

    def __contains__(self, needle: str) -> bool:
        return "".join(needle.split()) in self.squeezed


def one_line_error(args: list[str]) -> ErrorText:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = ErrorText(result.output)
    assert text.squeezed.startswith("error:") and text.squeezed.count("error:") == 1
    return text


def test_an_error_is_one_physical_line(tmp_path: Path) -> None:
    missing = tmp_path / ("a-long-folder-name-" * 4) / "images"
    args = ["prune", "--model", "lenet-5", "--data", f"imagefolder:{missing}", "--sparsity", "0.5"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert str(missing) in result.output


def test_an_unknown_model_spec_suggests_the_close_name(tmp_path: Path) -> None:
    text = one_line_error(["prune", "--model", "torchvison:resnet18", "--out", str(tmp_path)])
    assert "torchvison" in text and "did you mean 'torchvision'" in text
    text = one_line_error(["inspect", "small-resnt"])
    assert "did you mean 'small-resnet'" in text


def write_factory(tmp_path: Path) -> Path:
    file = tmp_path / "factories.py"
    file.write_text(
        "from torch import nn\n\n"
        "def broken():\n    raise RuntimeError('the checkpoint server is down')\n\n"
        "def small():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(),"
        " nn.LazyLinear(3))\n"
    )
    return file


def test_a_factory_that_raises_is_one_line(tmp_path: Path) -> None:
    file = write_factory(tmp_path)
    args = ["prune", "--model", f"{file}:broken", "--sparsity", "0.5"]
    text = one_line_error([*args, "--out", str(tmp_path / "o")])
    assert "the checkpoint server is down" in text and "broken" in text


def test_weights_that_do_not_fit_name_the_tensor(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "wrong.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 7, 7)}, str(weights))
    text = one_line_error(["inspect", "torchvision:resnet18", "--weights", str(weights)])
    assert "do not fit" in text and "conv1.weight" in text and "[8, 3, 7, 7]" in text


def test_a_data_folder_without_images_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("no pictures here")
    args = ["prune", "--model", "lenet-5", "--data", f"imagefolder:{tmp_path / 'empty'}"]
    text = one_line_error([*args, "--sparsity", "0.5", "--out", str(tmp_path / "o")])
    assert "no images found" in text and "empty" in text


def test_a_flops_target_is_one_line(tmp_path: Path) -> None:
    args = ["prune", "--granularity", "channel", "--target", "flops=0.5", "--out", str(tmp_path)]
    text = one_line_error(args)
    assert "target" in text and "'flops'" in text and "macs" in text
