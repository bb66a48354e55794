from pathlib import Path

import pytest

from prunekit.errors import ConfigError
from prunekit.recipe import load_recipe, parse_recipe


def test_embedded_demo_recipe_is_valid() -> None:
    from importlib import resources

    path = Path(str(resources.files("prunekit").joinpath("recipes/demo.yaml")))
    recipe = load_recipe(path)
    assert recipe.prune.sparsity == 0.9 and recipe.model.name == "lenet-300-100"


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"prune": {"sparsity": 1.2}}, r"prune: .*sparsity must be in \[0, 1\)"),
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
        ({"prune": {}}, "give sparsity or threshold"),
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
