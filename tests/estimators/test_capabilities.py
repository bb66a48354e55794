"""One estimator registry: every entry declares where it applies, and the lookups by capability
and by granularity give the hand-listed answers."""

import pytest

from prunekit.errors import ConfigError
from prunekit.estimators import (
    BLOCKS,
    CAPABILITIES,
    ESTIMATORS,
    LAYERWISE,
    UNITS,
    block_estimator,
    capabilities_of,
    estimators_for,
    estimators_with,
    get_estimator,
)
from prunekit.estimators.block_scores import Angular, SkipOracle
from prunekit.estimators.weights import Magnitude
from prunekit.granularity import get_granularity
from prunekit.llm import LLM_METHODS, get_llm_method

WEIGHT_AND_GRADIENT = ["fisher", "gradient", "hessian", "magnitude", "oracle", "random", "taylor"]


def test_one_list_holds_unit_block_and_layerwise_entries() -> None:
    activations = ["activation", "apoz", "mutual_info", "bn_scale"]
    assert ESTIMATORS.names() == sorted(
        [*WEIGHT_AND_GRADIENT, *activations, "angular", "wanda", "sparsegpt"]
    )


@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_every_entry_declares_capabilities_and_a_summary(name: str) -> None:
    cls = ESTIMATORS.get(name)
    assert cls.capabilities and cls.capabilities <= set(CAPABILITIES)
    assert cls.summary
    assert isinstance(cls.needs_data, bool)


def test_lookups_by_capability() -> None:
    assert estimators_with(LAYERWISE) == ["magnitude", "sparsegpt", "wanda"]
    assert estimators_with(BLOCKS) == ["angular", *WEIGHT_AND_GRADIENT]
    not_units = {"angular", "sparsegpt", "wanda"}
    assert set(estimators_with(UNITS)) == set(ESTIMATORS.names()) - not_units
    assert capabilities_of("magnitude") == {UNITS, BLOCKS, LAYERWISE}
    assert capabilities_of("slimming") == {UNITS}


def test_lookups_by_granularity() -> None:
    assert estimators_for("element") == WEIGHT_AND_GRADIENT
    assert estimators_for("2:4") == WEIGHT_AND_GRADIENT
    assert estimators_for(get_granularity("block:4x4")) == WEIGHT_AND_GRADIENT
    assert estimators_for("channel") == sorted(
        [*WEIGHT_AND_GRADIENT, "activation", "apoz", "bn_scale", "mutual_info"]
    )
    assert estimators_for("layer") == ["angular", *WEIGHT_AND_GRADIENT]


def test_existing_lookups_still_build_the_same_things() -> None:
    assert get_estimator("magnitude", p=2) == Magnitude(p=2)
    assert isinstance(get_estimator("angular"), Angular)
    assert isinstance(block_estimator("angular", per="token"), Angular)
    assert isinstance(block_estimator("oracle"), SkipOracle)
    assert block_estimator("magnitude") == Magnitude()
    assert LLM_METHODS.names() == ["magnitude", "sparsegpt", "wanda"]
    assert get_llm_method("sparsegpt", damp=0.1).damp == 0.1


def test_layerwise_methods_are_refused_as_unit_estimators_with_where_they_run() -> None:
    with pytest.raises(ConfigError, match=r"'wanda' prunes language models layer by layer"):
        get_estimator("wanda")
    with pytest.raises(ConfigError, match="scores output channels"):
        block_estimator("apoz")
