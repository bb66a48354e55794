"""prunekit.save / prunekit.load: a pruned model written without pickle and read back with its
pruned shapes rebuilt from the saved plan, with or without the dense model at hand."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit
from prunekit.errors import SaveFileError
from prunekit.io import METADATA_FILE, WEIGHTS_FILE, read_metadata
from prunekit.models import build_model


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def quiet_prune(model: nn.Module, example: torch.Tensor, **options: object) -> prunekit.PruneResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BatchNorm statistics without data: not under test
        return prunekit.prune(model, example, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pruned_resnet() -> tuple[prunekit.PruneResult, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("small-resnet").eval()
    result = quiet_prune(model, model.example_input(), granularity="channel", sparsity=0.5)
    return result, torch.randn(4, *model.example_input().shape[1:])


def test_the_io_module_is_reachable_from_the_package() -> None:
    assert callable(prunekit.io.save) and callable(prunekit.io.load)
    assert callable(prunekit.save) and callable(prunekit.load)


def test_load_into_the_dense_model_rebuilds_the_pruned_shapes(
    pruned_resnet: tuple[prunekit.PruneResult, torch.Tensor], tmp_path: Path
) -> None:
    result, x = pruned_resnet
    path = prunekit.save(result, tmp_path / "saved")
    assert (path / WEIGHTS_FILE).is_file() and (path / METADATA_FILE).is_file()
    dense = build_model("small-resnet")
    assert shapes(dense) != shapes(result.model)
    loaded = prunekit.load(path, dense).eval()
    assert shapes(loaded) == shapes(result.model)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model.eval()(x))
    meta = read_metadata(path)
    assert meta.plan is not None
    assert (meta.extra or {})["prune_config"]["sparsity"] == 0.5


def test_load_without_a_model_builds_the_reference_architecture_it_names(
    pruned_resnet: tuple[prunekit.PruneResult, torch.Tensor], tmp_path: Path
) -> None:
    result, x = pruned_resnet
    path = prunekit.save(result, tmp_path / "saved", arch={"model": "small-resnet", "kwargs": {}})
    loaded = prunekit.load(path).eval()
    assert type(loaded) is type(result.model)
    assert shapes(loaded) == shapes(result.model)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model.eval()(x))


def test_load_without_a_model_builds_a_torchvision_model_from_its_spec(tmp_path: Path) -> None:
    from prunekit.sources import load_model

    torch.manual_seed(0)
    model = load_model("torchvision:resnet18").model.eval()
    x = torch.randn(1, 3, 64, 64)
    result = quiet_prune(model, x, granularity="channel", sparsity=0.3)
    path = prunekit.save(result, tmp_path / "r18", arch={"model": "torchvision:resnet18"})
    loaded = prunekit.load(path).eval()
    assert type(loaded).__name__ == "ResNet"
    assert shapes(loaded) == shapes(result.model)
    conv1 = loaded.get_submodule("conv1")
    assert isinstance(conv1, nn.Conv2d) and conv1.out_channels < 64
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model.eval()(x), atol=0, rtol=0)


def test_a_masked_model_saved_without_a_plan_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("lenet-300-100")
    result = prunekit.prune(model, sparsity=0.8)
    assert result.plan is None
    path = prunekit.save(result.model, tmp_path / "masked")
    meta = read_metadata(path)
    assert meta.plan is None and len(meta.masked) > 0
    fresh = build_model("lenet-300-100")
    loaded = prunekit.load(path, fresh)
    assert loaded is fresh  # no plan: loaded into the model given
    masks, expected = prunekit.masks_of(loaded), prunekit.masks_of(result.model)
    assert masks.keys() == expected.keys()
    assert all(torch.equal(masks[k], expected[k]) for k in masks)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(loaded(x), result.model(x))
    # the masks survive: a weight update cannot revive a removed weight
    linear = next(m for m in loaded.modules() if isinstance(m, nn.Linear))
    zeros = linear.weight == 0
    assert zeros.float().mean() > 0.5
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1.0)
    assert bool((linear.weight[zeros] == 0).all())


def test_a_prune_result_refuses_extra_metadata(
    pruned_resnet: tuple[prunekit.PruneResult, torch.Tensor], tmp_path: Path
) -> None:
    result, _ = pruned_resnet
    with pytest.raises(prunekit.errors.ConfigError, match="extra"):
        prunekit.save(result, tmp_path / "x", extra={"note": "mine"})


def saved(tmp_path: Path) -> Path:
    return prunekit.save(build_model("lenet-300-100"), tmp_path / "saved")


def test_corrupt_weights_are_a_save_file_error(tmp_path: Path) -> None:
    path = saved(tmp_path)
    weights = path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(SaveFileError):
        prunekit.load(path, build_model("lenet-300-100"))


def test_corrupt_metadata_is_a_save_file_error(tmp_path: Path) -> None:
    path = saved(tmp_path)
    (path / METADATA_FILE).write_text('{"format": "prunekit.saved-model", ')
    with pytest.raises(SaveFileError, match=METADATA_FILE):
        prunekit.load(path, build_model("lenet-300-100"))


def test_tampered_weights_are_a_save_file_error(tmp_path: Path) -> None:
    path = saved(tmp_path)
    meta = json.loads((path / METADATA_FILE).read_text())
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of a value: the SHA-256 no longer matches
    weights.write_bytes(bytes(data))
    assert meta["weights"]["file"] == WEIGHTS_FILE
    with pytest.raises(SaveFileError):
        prunekit.load(path, build_model("lenet-300-100"))


def test_a_missing_save_is_a_save_file_error(tmp_path: Path) -> None:
    with pytest.raises(SaveFileError):
        prunekit.load(tmp_path / "nothing-here", build_model("lenet-300-100"))
