"""load_model: every spec family builds a model that runs on its own input shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models import LeNet5
from prunekit.sources import (
    ModelSource,
    SourceError,
    load_model,
    model_families,
    parse_model_spec,
    rebuild_model,
)

FACTORY_FILE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(4, width)

    def forward(self, x):
        return self.fc(x)

    def example_input(self):
        return torch.zeros(5, 4)


def make(width=3):
    return Tiny(width)


def bad(width=3):
    raise ValueError("width must be\\npositive")


def not_module():
    return 3
"""


def run(source: ModelSource) -> torch.Tensor:
    assert source.input_shape is not None
    with torch.no_grad():
        return source.model(torch.randn(source.input_shape))


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY_FILE)
    return path


def test_torchvision_resnet18_runs_on_its_input_shape() -> None:
    source = load_model("torchvision:resnet18", kwargs={"num_classes": 7})
    assert (source.family, source.spec) == ("torchvision", "torchvision:resnet18")
    assert source.input_shape == (1, 3, 224, 224)
    assert run(source).shape == (1, 7)
    assert not source.model.training
    assert source.tokenizer is None
    assert source.rebuild_spec == {"source": "torchvision:resnet18", "kwargs": {"num_classes": 7}}


def test_torchvision_input_shape_follows_the_published_crop() -> None:
    # inception_v3 was trained on 299x299 crops of 342-pixel resizes
    source = load_model("torchvision:inception_v3", kwargs={"init_weights": False})
    assert source.input_shape == (1, 3, 299, 299)
    transform = source.image_transform
    assert [type(t).__name__ for t in transform.transforms] == [  # type: ignore[union-attr]
        "Resize",
        "CenterCrop",
        "ToTensor",
        "Normalize",
    ]
    assert transform.transforms[0].size == 342  # type: ignore[union-attr]


def test_timm_model_takes_input_size_from_its_pretrained_config() -> None:
    source = load_model("timm:resnet10t", kwargs={"num_classes": 4})
    assert source.family == "timm"
    assert source.input_shape == (1, *source.model.pretrained_cfg["input_size"]) == (1, 3, 176, 176)
    assert run(source).shape == (1, 4)
    assert source.image_transform is not None


def test_bare_name_builds_a_reference_model_with_its_example_shape() -> None:
    source = load_model("LeNet5", kwargs={"in_size": 8})
    assert isinstance(source.model, LeNet5)
    assert (source.family, source.spec, source.input_shape) == ("prunekit", "lenet-5", (1, 1, 8, 8))
    assert run(source).shape == (1, 10)


def test_module_factory() -> None:
    source = load_model("prunekit.models:build_model", kwargs={"name": "small-vgg"})
    assert (source.family, source.spec) == ("python", "prunekit.models:build_model")
    assert source.input_shape == (1, 1, 28, 28)
    assert run(source).shape == (1, 10)


def test_file_factory_gets_kwargs_and_its_example_shape(factory_file: Path) -> None:
    source = load_model(f"{factory_file}:make", kwargs={"width": 6})
    assert source.family == "python"
    assert source.spec == f"{factory_file.resolve()}:make"
    assert source.input_shape == (1, 4)  # example_input() gives [5, 4]; batch 1
    assert run(source).shape == (1, 6)


def test_rebuild_spec_survives_json(factory_file: Path) -> None:
    source = load_model(f"{factory_file}:make", kwargs={"width": 2})
    again = rebuild_model(json.loads(json.dumps(source.rebuild_spec)))
    assert again.spec == source.spec
    assert again.model.fc.weight.shape == (2, 4)


def test_families_list_every_prefix() -> None:
    prefixes = [prefix for prefix, _ in model_families()]
    assert prefixes[:4] == ["prunekit", "torchvision", "timm", "hf"]
    assert {"FILE.py:FACTORY", "MODULE:FACTORY"} <= set(prefixes)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("lenet-5", ("prunekit", "lenet-5")),
        ("TIMM:resnet10t", ("timm", "resnet10t")),
        ("hf:/a/b:c", ("hf", "/a/b:c")),
        ("models/net.py:make", ("file", "models/net.py:make")),
        ("C:\\code\\net.py:make", ("file", "C:\\code\\net.py:make")),
        ("prunekit.models:build_model", ("module", "prunekit.models:build_model")),
    ],
)
def test_parse_model_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        (
            "torchvison:resnet18",
            None,
            "unknown model spec prefix 'torchvison' in "
            "'torchvison:resnet18' (did you mean 'torchvision'?)",
        ),
        (
            "torchvision:resnet181",
            None,
            "unknown torchvision model 'resnet181' (did you mean 'resnet18'?)",
        ),
        ("timm:resnet10x", None, "unknown timm model 'resnet10x' (did you mean 'resnet10t'?)"),
        ("lenet6", None, "(did you mean 'lenet5'?)"),
        ("lenet-5", {"in_sise": 8}, "unknown argument(s) in_sise (did you mean 'in_size'?)"),
        ("torchvision:resnet18", {"weights": "DEFAULT"}, "kwargs may not set 'weights'"),
        ("timm:resnet10t", {"pretrained": True}, "kwargs may not set 'pretrained'"),
        ("torchvision:resnet18", {"num_classes": "x"}, "torchvision:resnet18 raised TypeError"),
        ("torchvision:resnet18", {"act": nn.ReLU}, "must be JSON values"),
        ("", None, "a model spec must be a non-empty string"),
        ("torchvision:", None, "names no model after torchvision:"),
        ("net.py", None, "write 'net.py:FACTORY'"),
        ("nowhere/net.py:make", None, "model file 'nowhere/net.py' does not exist"),
        (
            "prunekit.models:buld_model",
            None,
            "prunekit.models has no 'buld_model' (did you mean 'build_model'?)",
        ),
        (
            "prunekit.models:MODELS",
            None,
            "factory prunekit.models:MODELS is a Registry, not callable",
        ),
    ],
)
def test_errors_are_one_line_source_errors(
    spec: str, kwargs: dict[str, object] | None, message: str
) -> None:
    with pytest.raises(SourceError) as caught:
        load_model(spec, kwargs=kwargs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_factory_that_raises_is_wrapped(factory_file: Path) -> None:
    with pytest.raises(SourceError) as caught:
        load_model(f"{factory_file}:bad")
    assert str(caught.value) == (
        f"factory {factory_file}:bad raised ValueError: width must be positive"
    )


def test_factory_returning_a_non_module_is_refused(factory_file: Path) -> None:
    with pytest.raises(SourceError, match=r"not_module returned int, not a torch.nn.Module$"):
        load_model(f"{factory_file}:not_module")


def test_file_that_fails_to_import_names_the_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import no_such_module_here\n")
    with pytest.raises(SourceError, match="raised ModuleNotFoundError: No module named"):
        load_model(f"{path}:make")
