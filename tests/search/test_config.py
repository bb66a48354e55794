"""One :class:`SearchConfig`: keyword options routed by name, an unknown one refused with both
lists, a recipe's ``search:`` section validating into the same config as the Python call, and
the result recording it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from torch import nn

from prunekit.config import make_config
from prunekit.errors import ConfigError
from prunekit.search import SEARCH_OPTIONS, SearchConfig, search
from prunekit.search.config import make_search_config, route_options
from prunekit.search.spec import split_recipe


def width(model: nn.Module) -> float:
    """Higher for wider hidden layers (a deterministic stand-in for accuracy)."""
    return float(model[0].out_features + model[2].out_features)


def test_options_are_routed_by_name() -> None:
    searched, pruned = route_options(
        {"searcher": "random", "trials": 3, "n_batches": 2, "granularity": "channel",
         "estimator": "taylor", "exclude": ["fc"]}
    )  # fmt: skip
    assert searched == {"searcher": "random", "trials": 3, "n_batches": 2}
    assert pruned == {"granularity": "channel", "estimator": "taylor", "exclude": ["fc"]}


def test_an_unknown_option_names_it_and_both_lists(mlp_case: Any) -> None:
    model, x, data = mlp_case
    with pytest.raises(ConfigError) as caught:
        search(model, x, data=data, target={"macs": 0.5}, trial=3, storage=":memory:")
    message = str(caught.value)
    assert message.startswith("search() got an unknown option 'trial' (did you mean 'trials'?)")
    assert "search options: searcher, space, stages, trials," in message
    assert "pruning options: granularity, estimator," in message
    assert "\n" not in message


def test_bad_values_are_one_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^search\(\): trials: Input should be greater"):
        make_search_config(None, {"trials": 0})
    with pytest.raises(ConfigError, match="did you mean 'tpe'"):
        make_search_config({"searcher": "tpee"})
    with pytest.raises(ConfigError, match="stages must be a name depth >= 1"):
        make_search_config(None, {"stages": 0})
    with pytest.raises(ConfigError, match="stages must be a name depth >= 1"):
        make_search_config(None, {"stages": "size"})
    with pytest.raises(ConfigError, match="stages must be a name depth >= 1"):
        make_search_config(None, {"stages": True})
    with pytest.raises(ConfigError, match="config must be a SearchConfig or a mapping"):
        make_search_config(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pass a PruneConfig as prune="):
        make_search_config(make_config(None, {"sparsity": 0.5}))  # type: ignore[arg-type]


def test_values_are_normalised() -> None:
    config = SearchConfig(
        searcher=" TPE ", space="Stage", stages="Resolution", storage=Path("a/b.journal")
    )
    assert (config.searcher, config.space, config.stages) == ("tpe", "stage", "resolution")
    assert config.storage == "a/b.journal" and config.held_batches == 8
    assert config.replace(eval_batches=3).held_batches == 3
    assert SEARCH_OPTIONS[:4] == ("searcher", "space", "stages", "trials")


def test_keyword_options_win_over_config_and_prune(mlp_case: Any) -> None:
    model, x, data = mlp_case
    result = search(
        model, x, data=data, target={"macs": 0.5}, objective=width, progress=False,
        config=SearchConfig(searcher="tpe", trials=5, storage=":memory:", seed=3),
        prune={"granularity": "channel", "estimator": "taylor"},
        searcher="random", trials=2, estimator="magnitude", n_batches=1,
    )  # fmt: skip
    assert len(result.trials) == 2 and result.searcher == "random"
    assert result.config.seed == 3 and result.config.n_batches == 1
    assert result.prune.estimator == "magnitude" and result.prune.granularity == "channel"


def test_recipe_section_is_the_same_config_as_the_python_call(mlp_case: Any) -> None:
    model, x, data = mlp_case
    result = search(
        model, x, data=data, target={"macs": 0.5}, searcher="random", trials=2,
        storage=":memory:", study_name="s", n_batches=1, eval_batches=2, objective="proxy-loss",
        seed=4, progress=False,
    )  # fmt: skip
    recipe = {
        "model": {"name": "small-vgg"}, "data": {"dataset": "digits"},
        "prune": {"granularity": "channel", "target": {"macs": 0.5}}, "seed": 4,
        "search": {"searcher": "random", "trials": 2, "storage": ":memory:", "study_name": "s",
                   "n_batches": 1, "eval_batches": 2, "objective": "proxy-loss"},
    }  # fmt: skip
    _, spec = split_recipe(recipe)
    assert spec.config == result.config
    assert type(spec.config) is SearchConfig


def test_the_result_records_the_config_it_ran_with(mlp_case: Any) -> None:
    model, x, data = mlp_case
    result = search(
        model, x, data=data, target={"macs": 0.5}, searcher="random", trials=2,
        storage=":memory:", objective=width, progress=False,
    )  # fmt: skip
    assert result.config == SearchConfig(
        searcher="random", trials=2, storage=":memory:", study_name="random-macs0.5-function"
    )
    assert result.objective == "function" and result.config.objective == "proxy"
    assert (result.storage, result.study_name) == (":memory:", "random-macs0.5-function")
    saved = result.to_dict()
    assert saved["search"]["trials"] == 2 and saved["search"]["study_name"] == result.study_name
    assert saved["prune"] == {"granularity": "channel", "sparsity": 0.0, "scope": "layer"}


def test_stages_mean_the_stage_space_and_are_refused_with_the_group_space() -> None:
    assert make_search_config(None, {"stages": "resolution"}).space == "stage"
    assert make_search_config(None, {"stages": 2, "space": "stage"}).stages == 2
    with pytest.raises(ConfigError, match="stages applies to space='stage'"):
        make_search_config(None, {"stages": "resolution", "space": "group"})
