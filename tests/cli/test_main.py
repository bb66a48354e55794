"""The CLI end to end on real data (scikit-learn digits, so it runs in seconds)."""

import json
from pathlib import Path

import yaml
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.main import app, demo_recipe, key_values
from prunekit.io import load, read_metadata

runner = CliRunner()


def test_list_shows_every_registry() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in (
        "taylor",
        "oracle",
        "mutual_info",
        "channel",
        "nm",
        "conv_transpose",
        "lenet-5",
        "digits",
        "angular",
        "blocks (layer)",
        "whole residual blocks",
    ):
        assert name in result.output


def digits_recipe(tmp_path: Path, **prune: object) -> Path:
    recipe = {
        "model": {"name": "lenet-300-100"},
        "data": {"dataset": "digits", "batch_size": 64},
        "train": {"epochs": 3, "lr": 0.003},
        "prune": {"estimator": {"name": "magnitude"}, "sparsity": 0.8, **prune},
        "finetune": {"epochs": 1},
        "output": {
            "dir": str(tmp_path / "out"),
            "curve": ["magnitude", "random"],
            "curve_sparsities": [0.5, 0.9],
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_prune_from_a_recipe_writes_a_loadable_model_table_and_plots(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prune", str(digits_recipe(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "dense vs one-shot pruned" in result.output and "accuracy" in result.output
    out = tmp_path / "out"
    assert (out / "layer_sparsity.png").stat().st_size > 1000
    assert (out / "accuracy_vs_sparsity.png").stat().st_size > 1000
    meta = read_metadata(out / "model")
    assert meta.arch is not None and meta.arch["model"] == "lenet-300-100"
    model = load(out / "model")
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - 0.8) < 0.01


def test_bad_recipe_exits_with_a_one_line_error(tmp_path: Path) -> None:
    path = digits_recipe(tmp_path, sparsity=1.5)
    result = runner.invoke(app, ["prune", str(path)])
    assert result.exit_code == 2
    assert "sparsity must be in [0, 1)" in result.output
    assert "Traceback" not in result.output


def test_prune_options_validate_like_a_recipe(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["prune", "--estimator", "magnitud", "--sparsity", "0.5", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "did you mean 'magnitude'" in result.output


def test_score_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    result = runner.invoke(
        app,
        [
            "score",
            "--model",
            "lenet-5",
            "--dataset",
            "digits",
            "--estimator",
            "taylor",
            "--batches",
            "2",
            "--train-epochs",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert set(scores) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    assert len(scores["conv1"]) == 6


def test_grade_prints_and_writes_the_correlation_table(tmp_path: Path) -> None:
    out = tmp_path / "grade.json"
    result = runner.invoke(
        app,
        [
            "grade",
            "--model",
            "lenet-5",
            "--dataset",
            "digits",
            "--estimators",
            "magnitude,taylor,random",
            "--batches",
            "2",
            "--train-epochs",
            "1",
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "grade.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert {r["estimator"] for r in rows} == {"magnitude", "taylor", "random"}
    assert all(-1 <= r["spearman"] <= 1 for r in rows)
    assert (tmp_path / "grade.png").stat().st_size > 1000


def test_quick_demo_recipe_is_a_smaller_job(tmp_path: Path) -> None:
    recipe = demo_recipe(quick=True, out=tmp_path)
    assert recipe.data.train_limit == 2_000 and recipe.output.dir == tmp_path
    assert recipe.finetune.max_steps == 10 and recipe.prune.target == {"macs": 0.5}
    assert recipe.model.checkpoint is not None and recipe.model.checkpoint.is_dir()
    unstructured = demo_recipe(quick=True, out=tmp_path, unstructured=True)
    assert unstructured.data.train_limit == 10_000 and unstructured.prune.sparsity == 0.9


def test_channel_recipe_prunes_physically_and_saves_the_plan(tmp_path: Path) -> None:
    from prunekit.surgery import rebuild_hook

    path = digits_recipe(tmp_path, granularity="channel", sparsity=0.5, scope="layer")
    recipe = yaml.safe_load(path.read_text())
    recipe["output"] = {"dir": str(tmp_path / "out"), "plots": False}
    recipe["train"]["epochs"] = 1
    path.write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["prune", str(path)])
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "out" / "model")
    assert meta.plan is not None
    model = load(tmp_path / "out" / "model", rebuild_hook=rebuild_hook)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [150, 50, 10]


def test_prune_options_remove_whole_blocks_at_layer_granularity(tmp_path: Path) -> None:
    from prunekit.surgery import rebuild_hook

    args = ["prune", "--model", "small-resnet", "--model-arg", "width=4"]
    args += ["--model-arg", "blocks=[2, 2, 2]", "--dataset", "digits", "--train-epochs", "0"]
    args += ["--granularity", "layer", "--estimator", "angular", "--sparsity", "0.5"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "dense vs one-shot pruned" in result.output
    meta = read_metadata(tmp_path / "model")
    assert meta.plan is not None and len(meta.plan["blocks"]) == 2
    assert meta.arch is not None and meta.arch["kwargs"]["blocks"] == [2, 2, 2]
    model = load(tmp_path / "model", rebuild_hook=rebuild_hook)
    identities = [m for m in model.modules() if type(m).__name__ == "IdentityBlock"]
    assert len(identities) == 2


def test_prune_options_distil_by_bn_scale_on_channels(tmp_path: Path) -> None:
    args = ["prune", "--model", "small-vgg", "--model-arg", "width=4", "--dataset", "digits"]
    args += ["--granularity", "channel", "--estimator", "bn-scale", "--sparsity", "0.25"]
    args += ["--finetune-epochs", "1", "--distill", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "distilling from the unpruned model" in result.output
    meta = read_metadata(tmp_path / "model")
    assert meta.plan is not None
    recipe = meta.extra["recipe"]
    assert recipe["prune"]["estimator"] in ("bn-scale", "bn_scale")
    assert recipe["finetune"]["distill"] == {"alpha": 0.5, "temperature": 2.0}
    result = runner.invoke(app, [*args[:-2], "--finetune-epochs", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "distill needs fine-tuning" in " ".join(result.output.split())


def test_layer_options_are_validated_like_a_layer_recipe(tmp_path: Path) -> None:
    base = ["prune", "--model", "small-resnet", "--granularity", "layer", "--out", str(tmp_path)]
    for extra, message in [
        (["--masks"], "it cannot mask"),
        (["--scope", "layer"], "no meaning there: scope: 'layer'"),
        (["--estimator", "apoz"], "estimator 'apoz' scores output channels"),
    ]:
        result = runner.invoke(app, [*base, "--sparsity", "0.5", *extra])
        assert result.exit_code == 2 and message in " ".join(result.output.split())
    result = runner.invoke(app, ["score", "--granularity", "layer"])
    assert result.exit_code == 2
    assert "prunekit prune --granularity layer" in " ".join(result.output.split())


def test_model_args_are_yaml_values() -> None:
    assert key_values(["width=8", "blocks=[3, 3, 3]"], "--model-arg") == {
        "width": 8,
        "blocks": [3, 3, 3],
    }
    result = runner.invoke(app, ["prune", "--model-arg", "width", "--sparsity", "0.5"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    result = runner.invoke(app, ["prune", "--model-arg", "widht=8", "--sparsity", "0.5"])
    assert result.exit_code == 2 and "no argument 'widht'" in result.output


def test_llm_commands_are_mounted() -> None:
    result = runner.invoke(app, ["llm", "--help"])
    assert result.exit_code == 0
    for command in ("prune", "eval", "depth"):
        assert command in result.output
