import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, UnknownNameError, UnsupportedLayerError
from prunekit.granularity import NM, Block, Channel, Element, build_groups, get_granularity


def test_specs_parse_to_granularities() -> None:
    assert get_granularity("element") == Element()
    assert get_granularity("unstructured") == Element()
    assert get_granularity("2:4") == NM(2, 4)
    assert get_granularity("nm:4:8") == NM(4, 8)
    assert get_granularity("block:4x4") == Block(4, 4)
    assert get_granularity("neuron") == Channel()
    assert get_granularity("filter") == Channel()
    assert get_granularity(NM(1, 4)).spec() == "1:4"


def test_unknown_granularity_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'channel'"):
        get_granularity("chanel")


@pytest.mark.parametrize("spec", ["4:4", "5:4", "0:4"])
def test_n_m_needs_n_below_m(spec: str) -> None:
    with pytest.raises(ConfigError, match="N:M"):
        get_granularity(spec)


def test_n_m_refuses_an_input_dim_not_divisible_by_m_naming_the_layer() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match=r"layer '0'.*size 6.*M=4"):
        build_groups(model, NM(2, 4))
    assert [g.name for g in build_groups(model, NM(2, 4), exclude=["0"])] == ["1"]


def test_channel_groups_hold_weight_rows_and_bias() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2, bias=False))
    groups = build_groups(model, Channel())
    assert [g.tensor_names() for g in groups] == [["0.weight", "0.bias"], ["2.weight"]]
    assert groups[0].output == ("0", 1) and groups[1].output == ("2", -1)
    masks = groups[0].expand(torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert masks["0.weight"][1].sum() == 0 and masks["0.weight"].sum() == 3 * 27
    assert masks["0.bias"].tolist() == [1.0, 0.0, 1.0, 1.0]


def test_conv_transpose_channels_lie_along_weight_dim_one() -> None:
    model = nn.Sequential(nn.ConvTranspose2d(3, 5, 2))
    (g,) = build_groups(model, Channel())
    assert g.n_units == 5
    grouped = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, groups=2))
    with pytest.raises(UnsupportedLayerError, match="groups"):
        build_groups(grouped, Channel())


def test_explicit_layer_without_rule_is_an_error_and_wildcards_warn() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    model = nn.Sequential(nn.Linear(3, 3), Custom())
    with pytest.raises(UnsupportedLayerError, match="'1'.*Custom"):
        build_groups(model, Element(), include=["1"])
    with pytest.warns(UserWarning, match=r"1 \(Custom\)"):
        groups = build_groups(model, Element())
    assert [g.name for g in groups] == ["0"]


def test_no_matching_layer_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no prunable layer"):
        build_groups(nn.Sequential(nn.ReLU()), Element())
    with pytest.raises(UnsupportedLayerError, match="no prunable layer named 'fc9'"):
        build_groups(nn.Sequential(nn.Linear(2, 2)), Element(), include=["fc9"])


def test_a_bare_layer_is_its_own_prunable_layer() -> None:
    (g,) = build_groups(nn.Linear(8, 4), Channel())
    assert g.name == "" and g.tensor_names() == ["weight", "bias"]
