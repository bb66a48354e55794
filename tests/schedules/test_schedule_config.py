"""A schedule's pruning options are a PruneConfig without a sparsity: the same validation and
``auto`` resolution as ``prunekit.prune``, the sparsity options refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from prunekit.config import PruneConfig
from prunekit.errors import ConfigError
from prunekit.schedules import Iterative, Stepper, prune_further, schedule_config


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))


def test_defaults_are_what_a_schedule_pruned_with_before() -> None:
    config = schedule_config()
    assert isinstance(config, PruneConfig) and config.sparsity is None
    assert (config.granularity, config.estimator, config.min_keep) == ("element", "magnitude", 1)
    assert (config.resolved_scope, config.resolved_normalize) == ("global", "none")
    assert config.min_keep_fraction == 0.0  # exact sparsity: no structural floor by default
    assert (config.include, config.exclude, config.n_batches) == (("*",), (), 8)


def test_auto_resolves_as_in_prune_for_structural_units() -> None:
    assert schedule_config({"granularity": "channel"}).resolved_scope == "layer"
    channels_global = schedule_config({"granularity": "channel", "scope": "global"})
    assert channels_global.resolved_normalize == "mean"
    assert schedule_config({"min_keep_fraction": 0.25}).min_keep_fraction == 0.25


def test_a_config_round_trips_and_a_mapping_equals_its_config() -> None:
    options = {"granularity": "channel", "estimator": "random", "estimator_options": {"seed": 3}}
    once = schedule_config(options)
    assert schedule_config(once) == once
    assert Stepper(Iterative(0.5, rounds=2), once).config == once


@pytest.mark.parametrize(
    ("name", "value"),
    [("sparsity", 0.5), ("threshold", 0.1), ("target", {"macs": 0.5}), ("overrides", {"1": 0.5})],
)
def test_the_schedule_decides_the_sparsity(name: str, value: Any) -> None:
    want = f"Stepper(): the schedule decides the sparsity; remove '{name}' from the config"
    with pytest.raises(ConfigError) as err:
        Stepper(Iterative(0.5, rounds=2), {name: value})
    assert str(err.value) == want
    with pytest.raises(ConfigError, match=r"^prune_further\(\): .*remove 'sparsity'"):
        prune_further(_mlp(), 0.5, PruneConfig(sparsity=0.5))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"granularity": "layer"}, "granularity 'layer' removes whole blocks by surgery"),
        ({"granularity": "channel", "surgery": True}, "surgery=True: a schedule masks"),
        ({"round_to": "auto"}, "round_to='auto' needs a runtime measurement"),
        ({"granularty": "channel"}, "unknown option 'granularty' (did you mean 'granularity'?)"),
        ({"scope": "per-layer"}, "scope: Input should be 'auto', 'global' or 'layer'"),
        ({"estimator": "magnitud"}, "unknown estimator 'magnitud'"),
    ],
)
def test_one_shot_options_and_bad_values_are_refused_naming_the_caller(
    options: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Stepper(Iterative(0.5, rounds=2), options)
    message = str(err.value)
    assert message.startswith("Stepper()") and words in message and "\n" not in message


def test_not_a_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^Stepper\(\): .* got list$"):
        Stepper(Iterative(0.5, rounds=2), ["channel"])  # type: ignore[arg-type]


def test_result_records_the_step_config() -> None:
    result = prune_further(_mlp(), 0.25, {"granularity": "channel"})
    assert result.config.sparsity == 0.25 and result.config.resolved_scope == "layer"
    # per layer: round(0.25 * 12) = 3 of the first layer's rows, round(0.25 * 4) = 1 of the last's
    assert [int((~keep).sum()) for keep in result.selection.values()] == [3, 1]
