"""A recipe's search section: ``finetune.processes`` and a ``size`` budget move to it."""

from __future__ import annotations

import pytest

from prunekit.errors import ConfigError
from prunekit.search import SearchConfig
from prunekit.search.spec import budget_of, split_recipe


def base(**prune: object) -> dict[str, object]:
    return {"model": {"name": "small-vgg"}, "data": {"dataset": "digits"},
            "prune": {"granularity": "channel", **prune}}  # fmt: skip


def test_processes_and_stages_are_read() -> None:
    data = {**base(target={"macs": 0.4}), "finetune": {"max_steps": 5, "processes": 2},
            "search": {"space": "Stage", "stages": {"features.*": "body"}}}  # fmt: skip
    recipe, spec = split_recipe(data)
    assert spec.processes == 2 and recipe.finetune.max_steps == 5
    assert spec.space == "stage" and spec.stages == {"features.*": "body"}
    assert budget_of(recipe, spec) == {"macs": 0.4}


def test_a_size_budget_moves_to_the_search_section() -> None:
    recipe, spec = split_recipe(base(target={"size": 0.3}))
    assert budget_of(recipe, spec) == {"size": 0.3} and recipe.prune.target is None


def test_unknown_space_and_missing_budget_are_refused() -> None:
    with pytest.raises(ConfigError, match="space must be one of"):
        split_recipe({**base(target={"macs": 0.4}), "search": {"space": "block"}})
    with pytest.raises(ConfigError, match=r"prune\.target is the search's budget"):
        split_recipe(base(sparsity=0.5))


def test_command_line_overrides_win_and_are_validated() -> None:
    data = {**base(target={"macs": 0.4}), "search": {"trials": 9, "space": "group"}}
    _, spec = split_recipe(data, overrides={"trials": 3, "space": "stage", "processes": 2})
    assert (spec.trials, spec.space, spec.processes) == (3, "stage", 2)
    with pytest.raises(ConfigError, match="invalid search section"):
        split_recipe(data, overrides={"searcher": "bogus"})


def test_the_recipe_seed_is_the_search_seed_unless_the_section_sets_one() -> None:
    data = {**base(target={"macs": 0.4}), "seed": 7, "search": {"stages": "resolution"}}
    _, spec = split_recipe(data)
    assert (spec.config.seed, spec.config.stages) == (7, "resolution")
    _, spec = split_recipe({**data, "search": {"seed": 2}})
    assert spec.config.seed == 2


def test_the_section_is_a_search_config_plus_its_budget() -> None:
    recipe, spec = split_recipe(base(target={"size": 0.3}))
    assert isinstance(spec, SearchConfig) and spec.config == SearchConfig()
    assert budget_of(recipe, spec) == {"size": 0.3}
    assert "target" not in spec.config.model_dump()
    with pytest.raises(ConfigError, match="invalid search section: trial: Extra inputs"):
        split_recipe({**base(target={"macs": 0.4}), "search": {"trial": 3}})
