"""PruneConfig is the one definition of every pruning option: the Python API, a recipe's
``prune:`` section and ``prunekit prune`` all build it, with the same help text, defaults and
checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import prunekit
from prunekit.cli.main import CONFIG_OPTIONS, app, key_values
from prunekit.config import PruneConfig, make_config
from prunekit.errors import ConfigError, UnknownNameError
from prunekit.io import read_metadata
from prunekit.models import build_model
from prunekit.recipe import Recipe, parse_recipe

runner = CliRunner()
FIELDS = sorted(PruneConfig.model_fields)

#: Every field without an option of its own: the ``--set`` text, the value the config must hold,
#: and the other options that make a valid job with it.
SET_VALUES: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "estimator_options": ("{p: 2}", {"p": 2}, {"sparsity": 0.5}),
    "threshold": ("0.25", 0.25, {}),
    "normalize": ("l2", "l2", {"sparsity": 0.5}),
    "min_keep": ("3", 3, {"sparsity": 0.5}),
    "min_keep_fraction": ("0.2", 0.2, {"sparsity": 0.5}),
    "round_to": ("8", 8, {"sparsity": 0.5}),
    "include": ("['fc*']", ("fc*",), {"sparsity": 0.5}),
    "overrides": ("{'fc1': 0.7}", {"fc1": 0.7}, {"sparsity": 0.5}),
    "n_batches": ("2", 2, {"sparsity": 0.5}),
    "verify": ("false", False, {"sparsity": 0.5}),
    "verify_exhaustive": ("true", True, {"sparsity": 0.5}),
    "atol": ("0.001", 0.001, {"sparsity": 0.5}),
    "metrics": ("false", False, {"sparsity": 0.5}),
    "latency": ("true", True, {"sparsity": 0.5}),
    "heads": ("false", False, {"sparsity": 0.5}),
    "recalibrate": ("false", False, {"sparsity": 0.5}),
}


def prune_params() -> dict[str, Any]:
    """The ``prunekit prune`` command's parameters (typer's own click) by first option string."""
    command = typer.main.get_command(app).commands["prune"]  # type: ignore[attr-defined]
    return {p.opts[0]: p for p in command.params if p.opts and p.opts[0].startswith("--")}


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_described(name: str) -> None:
    text = PruneConfig.help(name)
    assert len(text.split()) >= 3 and text.endswith((".", ")")), f"{name}: help {text!r}"


@pytest.mark.parametrize("field", sorted(CONFIG_OPTIONS))
def test_cli_option_takes_its_help_from_the_config_and_defers_its_default(field: str) -> None:
    option = CONFIG_OPTIONS[field].split("/")[0]
    params = prune_params()
    assert option in params, f"prunekit prune has no {option}"
    param = params[option]
    assert PruneConfig.help(field) in (param.help or "")
    assert param.default is None  # unset on the command line: the config's default applies


def test_config_options_name_real_fields() -> None:
    assert set(CONFIG_OPTIONS) <= set(PruneConfig.model_fields)


def test_every_other_field_has_a_set_example() -> None:
    others = set(PruneConfig.model_fields) - set(CONFIG_OPTIONS)
    assert others == set(SET_VALUES), "add the new field to SET_VALUES"


@pytest.mark.parametrize("field", sorted(SET_VALUES))
def test_set_reaches_every_other_field_through_the_recipe(field: str) -> None:
    text, expected, rest = SET_VALUES[field]
    prune = {**rest, **key_values([f"{field}={text}"], "--set")}
    recipe = parse_recipe({"data": {"dataset": "digits"}, "prune": prune}, "command line")
    assert getattr(recipe.prune, field) == expected
    assert PruneConfig.default(field) != expected, "pick a value that is not the default"


def test_recipe_prune_section_is_prune_config() -> None:
    assert Recipe.model_fields["prune"].annotation is PruneConfig


def test_set_on_the_command_line_reaches_the_saved_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["prune", "--model", "lenet-300-100", "--data", "digits", "--data-limit", "64"]
    args += ["--batch-size", "32", "--train-epochs", "0", "--sparsity", "0.5"]
    args += ["--set", "min_keep_fraction=0.2", "--set", "calibration_batches=1"]
    args += ["--set", "overrides={'fc1': 0.75}", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    extra = read_metadata(out / "model").extra or {}
    saved = PruneConfig.model_validate(extra["prune_config"])
    assert saved.min_keep_fraction == 0.2
    assert saved.n_batches == 1
    assert saved.overrides == {"fc1": 0.75}
    assert saved.sparsity == 0.5


def run_set(tmp_path: Path, pair: str) -> str:
    args = ["prune", "--sparsity", "0.5", "--set", pair, "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # rich wraps at the terminal width


def test_set_with_an_unknown_field_is_an_error_naming_it(tmp_path: Path) -> None:
    output = run_set(tmp_path, "min_keep_fractoin=0.2")
    assert output.startswith("error:") and "prune: unknown option 'min_keep_fractoin'" in output


def test_set_with_an_unknown_field_suggests_the_close_name(tmp_path: Path) -> None:
    output = run_set(tmp_path, "min_keep_fractoin=0.2")
    assert "did you mean 'min_keep_fraction'" in output


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"sparsity": 1.0}, ["sparsity", "[0, 1)", "1.0"]),
        ({"sparsty": 0.5}, ["'sparsty'", "did you mean 'sparsity'"]),
        ({"sparsity": 0.5, "exclude": "fc1"}, ["exclude", "'fc1'", "['fc1']"]),
        ({"granularity": "channel", "target": "flops=0.5"}, ["target", "'flops'", "macs"]),
        (
            {"granularity": "channel", "target": "macs=0.5", "sparsity": 0.5},
            ["sparsity and target"],
        ),
        ({"target": {"macs": 0.5}}, ["target", "structural"]),
        ({"granularity": "channel", "target": "macs=0.5", "surgery": False}, ["structural"]),
        ({"sparsity": 0.5, "overrides": {"fc1": 1.0}}, ["overrides['fc1']"]),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(
    options: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(None, options)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_prune_rejects_an_unknown_option_before_touching_the_model() -> None:
    model = build_model("lenet-300-100")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="did you mean 'sparsity'"):
        prunekit.prune(model, sparsty=0.5)
    assert all((model.state_dict()[k] == v).all() for k, v in before.items())


def test_an_unknown_estimator_is_an_unknown_name_error() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'magnitude'"):
        make_config(None, {"estimator": "magnitud", "sparsity": 0.5})


def test_calibration_batches_is_an_alias_of_n_batches() -> None:
    assert make_config(None, {"sparsity": 0.5, "calibration_batches": 3}).n_batches == 3
    assert PruneConfig(sparsity=0.5, calibration_batches=4).n_batches == 4  # type: ignore[call-arg]
    recipe = parse_recipe({"prune": {"sparsity": 0.5, "calibration_batches": 2}})
    assert recipe.prune.n_batches == 2


def test_replace_validates_and_keeps_the_rest() -> None:
    config = make_config(None, {"sparsity": 0.5, "granularity": "channel"})
    changed = config.replace(sparsity=0.3)
    assert (changed.sparsity, changed.granularity) == (0.3, "channel")
    assert config.sparsity == 0.5  # frozen: the original is unchanged
    with pytest.raises(ConfigError, match="sparsity must be in"):
        config.replace(sparsity=1.5)
    with pytest.raises(ConfigError, match="did you mean 'sparsity'"):
        config.replace(sparsty=0.3)
    with pytest.raises(ConfigError, match="sparsity and target"):
        config.replace(target="macs=0.5")


def test_config_is_frozen_and_round_trips_as_plain_data() -> None:
    config = make_config(None, {"sparsity": 0.5, "granularity": "channel", "exclude": ["fc3"]})
    with pytest.raises(Exception, match="frozen"):
        config.sparsity = 0.1  # type: ignore[misc]
    assert PruneConfig.model_validate(config.to_dict()) == config


def test_target_text_and_mapping_mean_the_same() -> None:
    text = make_config(None, {"granularity": "channel", "target": "macs=0.5"})
    mapping = make_config(None, {"granularity": "channel", "target": {"macs": 0.5}})
    assert text.target == mapping.target == {"macs": 0.5}


@pytest.mark.parametrize(
    ("options", "scope", "normalize"),
    [
        ({"granularity": "channel", "sparsity": 0.5}, "layer", "none"),
        ({"granularity": "channel", "sparsity": 0.5, "scope": "global"}, "global", "mean"),
        (
            {"granularity": "channel", "sparsity": 0.5, "scope": "global", "normalize": "none"},
            "global",
            "none",
        ),
        ({"granularity": "element", "sparsity": 0.9}, "global", "none"),
        ({"granularity": "2:4"}, "global", "none"),
        ({"granularity": "layer", "sparsity": 0.3, "estimator": "angular"}, "global", "none"),
    ],
)
def test_auto_defaults_follow_the_selection_benchmark(
    options: dict[str, object], scope: str, normalize: str
) -> None:
    """Channels: per-layer selection (a global ranking of raw scores starves layers); a global
    ranking of channels normalises by the mean; weights keep one global magnitude ranking."""
    selection = PruneConfig(**options).selection()  # type: ignore[arg-type]
    assert (selection.scope, selection.normalize) == (scope, normalize)
    assert selection.min_keep_fraction == (0.0 if options["granularity"] == "layer" else 0.1)
