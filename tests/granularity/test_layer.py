"""Granularity 'layer' is registered with attributes that say what it is, so callers dispatch on
them instead of on the name."""

import pytest
from torch import nn

from prunekit.errors import ConfigError
from prunekit.granularity import GRANULARITIES, NM, Block, Channel, Element, Layer, get_granularity
from prunekit.granularity.base import build_groups
from prunekit.surgery.layers import is_layer_granularity


def test_layer_is_registered_and_parses() -> None:
    assert "layer" in GRANULARITIES
    assert get_granularity("layer") == Layer()
    assert get_granularity(" Layer ").spec() == "layer"
    assert get_granularity("block:4x4") == Block(4, 4)
    assert get_granularity("block") == Block()
    assert is_layer_granularity("layer") and not is_layer_granularity("block:4x4")


@pytest.mark.parametrize(
    ("spec", "unit", "structural", "maskable", "needs_surgery"),
    [
        ("element", "weight", False, True, False),
        ("2:4", "slot", False, True, False),
        ("block:2x2", "tile", False, True, False),
        ("channel", "channel", True, True, False),
        ("layer", "block", True, False, True),
    ],
)
def test_attributes_say_what_a_unit_is_and_how_it_goes(
    spec: str, unit: str, structural: bool, maskable: bool, needs_surgery: bool
) -> None:
    gran = get_granularity(spec)
    assert (gran.unit, gran.structural, gran.maskable, gran.needs_surgery) == (
        unit,
        structural,
        maskable,
        needs_surgery,
    )


def test_every_registered_granularity_declares_its_unit() -> None:
    assert {GRANULARITIES.get(n).unit for n in GRANULARITIES.names()} == {
        "weight",
        "slot",
        "tile",
        "channel",
        "block",
    }
    assert [cls.name for cls in (Element, NM, Block, Channel, Layer)] == [
        "element",
        "nm",
        "block",
        "channel",
        "layer",
    ]


def test_per_layer_groups_are_refused_for_whole_blocks() -> None:
    with pytest.raises(ConfigError, match="granularity 'layer' groups whole residual blocks"):
        build_groups(nn.Sequential(nn.Linear(2, 2)), Layer())
