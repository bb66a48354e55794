import pytest
import torch
from torch import fx, nn

from prunekit.errors import ConfigError, UnknownNameError
from prunekit.models import (
    MODELS,
    LeNet5,
    LeNet300100,
    SmallResNet,
    SmallVGG,
    build_model,
    lenet5_geometry,
    model_args,
)

STANDARD_LAYERS = (nn.Linear, nn.Conv2d, nn.BatchNorm2d)


@pytest.mark.parametrize("in_size", [28, 8])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_images_to_logits(name: str, in_size: int) -> None:
    model = build_model(name, in_channels=3, num_classes=7, in_size=in_size)
    x = torch.randn(4, 3, in_size, in_size)
    assert model(x).shape == (4, 7)
    assert model.example_input(5).shape == (5, 3, in_size, in_size)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_is_built_from_standard_named_layers(name: str) -> None:
    model = build_model(name)
    with_params = [m for m in model.modules() if list(m.parameters(recurse=False))]
    assert with_params and all(isinstance(m, STANDARD_LAYERS) for m in with_params)
    # no module (e.g. a ReLU) is reused under two names, so hooks see one place each
    assert len(list(model.named_modules(remove_duplicate=False))) == len(list(model.modules()))


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_traces_with_torch_fx(name: str) -> None:
    model = build_model(name).eval()
    x = model.example_input()
    assert torch.allclose(fx.symbolic_trace(model)(x), model(x))


@pytest.mark.parametrize("name", MODELS.names())
def test_unknown_argument_names_the_model_and_lists_valid_ones(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(name, in_sise=8)
    message = str(info.value)
    assert repr(name) in message and "in_sise" in message and "did you mean 'in_size'" in message
    assert all(arg in message for arg in model_args(name))


def test_unknown_model_and_aliases() -> None:
    assert isinstance(build_model("LeNet5"), LeNet5)
    assert isinstance(build_model("resnet-8"), SmallResNet)
    with pytest.raises(UnknownNameError, match="did you mean 'lenet-5'"):
        build_model("lenet-6")


def test_lenet_300_100_has_the_published_parameter_count() -> None:
    model = LeNet300100()
    # 784*300 + 300 + 300*100 + 100 + 100*10 + 10
    assert sum(p.numel() for p in model.parameters()) == 266_610
    assert model.fc1.weight.shape == (300, 784)


def test_lenet5_on_28x28_is_the_classic_network() -> None:
    model = LeNet5()
    # conv1 156 + conv2 2,416 + fc1 48,120 + fc2 10,164 + fc3 850
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model.conv2.padding == (0, 0) and model.fc1.in_features == 16 * 5 * 5


def test_lenet5_pads_conv2_for_8x8_digits() -> None:
    model = LeNet5(in_size=8)
    assert model.conv2.padding == (2, 2) and model.fc1.in_features == 16 * 2 * 2


@pytest.mark.parametrize(
    ("in_size", "expected"),
    [(28, (0, 5)), (32, (0, 6)), (12, (0, 1)), (11, (2, 2)), (8, (2, 2)), (4, (2, 1))],
)
def test_lenet5_geometry(in_size: int, expected: tuple[int, int]) -> None:
    assert lenet5_geometry(in_size) == expected
    assert LeNet5(in_size=in_size)(torch.zeros(1, 1, in_size, in_size)).shape == (1, 10)


def test_lenet5_refuses_inputs_too_small() -> None:
    with pytest.raises(ConfigError, match="at least 4"):
        LeNet5(in_size=3)


def test_small_vgg_layout_and_widths() -> None:
    model = SmallVGG(width=8, num_stages=2, convs_per_stage=3)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [8] * 3 + [
        16
    ] * 3
    assert model.features.stage2.bn3.num_features == 16
    assert model.fc.in_features == 16
    with pytest.raises(ConfigError, match="too small for 3 stages"):
        SmallVGG(in_size=7)


def test_small_resnet_default_is_resnet_8() -> None:
    model = SmallResNet()
    main_path = [
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and "downsample" not in name
    ]
    assert len(main_path) == 8
    assert model.layer1[0].downsample is None
    assert model.layer2[0].downsample is not None and model.layer3[0].conv1.stride == (2, 2)
    assert len(SmallResNet(blocks=(3, 3, 3)).layer3) == 3


def test_residual_block_adds_its_input() -> None:
    """With bn2 zeroed the residual branch is 0, so an identity block computes relu(x)."""
    block = SmallResNet(width=4).layer1[0].eval()
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), torch.relu(x))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("lenet-300-100", {"hidden": (300,)}, "hidden needs 2 values"),
        ("lenet-5", {"num_classes": 0}, "num_classes must be a positive integer"),
        ("small-vgg", {"width": 0}, "width must be a positive integer"),
        ("small-resnet", {"blocks": ()}, "blocks needs at least one value"),
    ],
)
def test_bad_sizes_are_refused_by_name(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(name, **kwargs)
