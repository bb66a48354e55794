from pathlib import Path

import pytest

from prunekit.errors import ConfigError
from prunekit.recipe import load_recipe, parse_recipe


def test_embedded_demo_recipe_is_valid() -> None:
    from importlib import resources

    path = Path(str(resources.files("prunekit").joinpath("recipes/demo.yaml")))
    recipe = load_recipe(path)
    assert recipe.prune.target == {"macs": 0.5} and recipe.model.name == "small-vgg"
    assert recipe.prune.granularity == "channel" and recipe.finetune.distill is not None
    unstructured = load_recipe(path.with_name("demo_unstructured.yaml"))
    assert unstructured.prune.sparsity == 0.9 and unstructured.model.name == "lenet-300-100"


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"prune": {"sparsity": 1.2}}, r"prune\.sparsity: .*sparsity must be in \[0, 1\)"),
        ({"prune": {"sparsity": 0.5, "estimator": {"name": "taylr"}}}, "did you mean 'taylor'"),
        (
            {"prune": {"sparsity": 0.5, "estimator": {"name": "magnitude", "options": {"q": 1}}}},
            "no option 'q'",
        ),
        (
            {"prune": {"sparsity": 0.5}, "model": {"name": "lenet-5", "kwargs": {"widht": 2}}},
            "no argument 'widht'",
        ),
        ({"prune": {"sparsity": 0.5, "granularity": "5:4"}}, "prune.granularity.*N:M"),
        (
            {"prune": {"sparsity": 0.5}, "data": {"dataset": "mnst"}},
            "data.dataset.*did you mean 'mnist'",
        ),
        ({"prune": {"sparsity": 0.5}, "extra": 1}, "extra: Extra inputs"),
        ({"prune": {}}, "needs sparsity, threshold or target"),
        ({"prune": {"sparsity": 0.5}, "finetune": {"lr": -1}}, "finetune.lr"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_recipes_are_refused_naming_the_field(recipe: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(recipe, "x.yaml")


def test_recipe_files_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_recipe(bad)


def layer_recipe(**prune: object) -> dict[str, object]:
    return {"prune": {"granularity": "layer", "sparsity": 0.5, **prune}}


@pytest.mark.parametrize(
    ("estimator", "options", "built"),
    [
        ("angular", {}, "Angular"),
        ("angular", {"per": "token"}, "Angular"),
        ("oracle", {}, "SkipOracle"),  # the block oracle skips the block, it does not zero it
        ("magnitude", {"reduction": "mean"}, "Magnitude"),  # lifted to blocks
    ],
)
def test_layer_recipe_takes_block_and_lifted_estimators_and_implies_surgery(
    estimator: str, options: dict[str, object], built: str
) -> None:
    recipe = parse_recipe(layer_recipe(estimator={"name": estimator, "options": options}))
    assert recipe.prune.granularity == "layer" and recipe.prune.is_layer
    assert type(recipe.prune.build_estimator()).__name__ == built


def test_layer_granularity_is_spelled_like_the_api() -> None:
    recipe = parse_recipe(layer_recipe(granularity=" Layer ", surgery=True))
    assert recipe.prune.granularity == "layer" and recipe.prune.is_layer


@pytest.mark.parametrize(
    ("prune", "message"),
    [
        ({"scope": "layer"}, "no meaning there: scope: 'layer'"),
        ({"round_to": 8}, "no meaning there: round_to: 8"),
        ({"normalize": "max"}, "no meaning there: normalize: 'max'"),
        ({"min_keep": 2}, "no meaning there: min_keep: 2"),
        ({"surgery": False}, "by surgery; it cannot mask"),
        ({"sparsity": None}, "needs sparsity .*candidate blocks"),
        ({"estimator": {"name": "activation"}}, "scores output channels"),
        ({"estimator": {"name": "angular", "options": {"per": "pixel"}}}, "per must be"),
        (
            {"estimator": {"name": "angulr"}},
            r"prune: unknown estimator 'angulr'.*did you mean 'angular'",
        ),
    ],
)
def test_bad_layer_recipes_are_refused_clearly(prune: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(layer_recipe(**prune), "x.yaml")


def test_block_estimators_need_layer_granularity() -> None:
    with pytest.raises(ConfigError, match="'angular' scores whole residual blocks.*'channel'"):
        parse_recipe(
            {"prune": {"granularity": "channel", "sparsity": 0.5, "estimator": {"name": "angular"}}}
        )
    with pytest.raises(ConfigError, match="output.curve: estimator 'angular'"):
        parse_recipe({"prune": {"sparsity": 0.5}, "output": {"curve": ["angular"]}})
    recipe = parse_recipe({**layer_recipe(), "output": {"curve": ["angular", "oracle"]}})
    assert recipe.output.curve == ["angular", "oracle"]


def test_example_shape_is_parsed_and_checked() -> None:
    recipe = parse_recipe({"prune": {"sparsity": 0.5}, "example_shape": "1x3x32x32"})
    assert recipe.example_shape == [1, 3, 32, 32]
    with pytest.raises(ConfigError, match="example_shape: input shape '1xfoo'"):
        parse_recipe({"prune": {"sparsity": 0.5}, "example_shape": "1xfoo"})
