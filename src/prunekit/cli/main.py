"""``prunekit`` commands: list, demo, prune, score, grade.

Each command parses its options, builds the same validated :class:`~prunekit.recipe.Recipe` a YAML
file would, and calls the public API; errors from prunekit are shown as one clear line and exit
with status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console

from prunekit.cli import views
from prunekit.cli.compress import compress_command
from prunekit.cli.export import export_command
from prunekit.cli.inspect import inspect_command
from prunekit.cli.llm import llm_app
from prunekit.cli.llm_heal import heal_command
from prunekit.cli.llm_stream import stream_command
from prunekit.cli.options import key_values
from prunekit.cli.search import search_command
from prunekit.config import PruneConfig
from prunekit.errors import ConfigError, PrunekitError
from prunekit.recipe import Recipe, load_recipe, parse_recipe

app = typer.Typer(
    name="prunekit",
    help="Importance estimation and pruning for PyTorch networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
llm_app.command("heal")(heal_command)
llm_app.command("stream")(stream_command)
app.add_typer(llm_app, name="llm")
app.command("export")(export_command)
app.command("compress")(compress_command)
app.command("inspect")(inspect_command)
app.command("search")(search_command)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _guarded(action: Callable[[], T]) -> T:
    try:
        return action()
    except PrunekitError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _log(message: str) -> None:
    console.print(f"[dim]»[/] {message}", highlight=False)


def demo_recipe(quick: bool, out: Path | None, unstructured: bool = False) -> Recipe:
    """The embedded default job (``unstructured``: the weight-pruning one); ``quick`` uses a
    slice of the data for a fast smoke run."""
    name = "demo_unstructured.yaml" if unstructured else "demo.yaml"
    package = resources.files("prunekit")
    data = yaml.safe_load(package.joinpath(f"recipes/{name}").read_text())
    if not unstructured:  # the dense model ships with prunekit
        data["model"]["checkpoint"] = str(
            package.joinpath("recipes/models/small-vgg-fashion-mnist")
        )
    if quick:
        data["data"]["train_limit"] = 10_000 if unstructured else 2_000
        data["data"]["test_limit"] = 2_000
        if unstructured:
            data["train"]["epochs"] = 1
        else:
            data["finetune"]["max_steps"] = 10
    if out is not None:
        data["output"]["dir"] = str(out)
    return parse_recipe(data, name)


@app.command("list")
def list_command() -> None:
    """Show every registry: estimators, granularities, layer rules, models, data sets."""
    for table in views.registry_tables():
        console.print(table)


@app.command()
def demo(
    quick: Annotated[bool, typer.Option(help="Use a slice of the data (smoke test).")] = False,
    unstructured: Annotated[
        bool,
        typer.Option(help="Instead: remove 90% of LeNet-300-100's weights on MNIST (masks)."),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
) -> None:
    """Halve a Fashion-MNIST VGG's MACs by channel pruning, recover it, report before/after."""
    recipe = _guarded(lambda: demo_recipe(quick, out, unstructured))
    _run(recipe, command=" ".join(["prunekit", *sys.argv[1:]]))


def _config_help(name: str) -> str:
    """An option's help: the config field's help text and its default."""
    default = PruneConfig.default(name)
    shown = "none" if default is None else default
    return f"{PruneConfig.help(name)} [default: {shown}]"


CONFIG_OPTIONS: dict[str, str] = {
    "estimator": "--estimator",
    "granularity": "--granularity",
    "sparsity": "--sparsity",
    "target": "--target",
    "scope": "--scope",
    "surgery": "--surgery/--masks",
    "exclude": "--exclude",
}
"""PruneConfig fields with an option of their own in ``prunekit prune``; every other field is
reached with ``--set FIELD=VALUE``. Help texts and defaults come from the config."""


@app.command("prune")
def prune_command(
    recipe_file: Annotated[
        Path | None, typer.Argument(help="YAML recipe (see docs/recipes.md).")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="Model: a reference model name, torchvision:NAME, timm:NAME, hf:DIR, "
            "file.py:FACTORY or package.module:FACTORY."
        ),
    ] = "lenet-300-100",
    weights: Annotated[
        Path | None,
        typer.Option(help="Weights for a model spec: .safetensors, a HF directory, a state dict."),
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(help="Model argument KEY=VALUE (a YAML value, e.g. blocks=[3,3,3])."),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="prunekit save directory to load.")
    ] = None,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "--dataset",
            help="Data: mnist, fashion-mnist, digits, imagefolder:DIR, npz:FILE, text:FILE.",
        ),
    ] = "mnist",
    batch_size: Annotated[int, typer.Option(help="Batch size of the data.")] = 128,
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="Example input shape for tracing, e.g. 1x3x224x224 (default: the data's)."
        ),
    ] = None,
    data_limit: Annotated[
        int | None, typer.Option(help="Use only the first N training samples.")
    ] = None,
    estimator: Annotated[str | None, typer.Option(help=_config_help("estimator"))] = None,
    granularity: Annotated[str | None, typer.Option(help=_config_help("granularity"))] = None,
    sparsity: Annotated[float | None, typer.Option(help=_config_help("sparsity"))] = None,
    target: Annotated[str | None, typer.Option(help=_config_help("target"))] = None,
    scope: Annotated[str | None, typer.Option(help=_config_help("scope"))] = None,
    surgery: Annotated[
        bool | None, typer.Option("--surgery/--masks", help=_config_help("surgery"))
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help=_config_help("exclude"))] = None,
    set_option: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other pruning option FIELD=VALUE (a YAML value), e.g. --set "
            "min_keep_fraction=0.2; the fields are those of a recipe's prune: section.",
        ),
    ] = None,
    train_epochs: Annotated[
        int | None,
        typer.Option(help="Training epochs before pruning (reference models: default 1)."),
    ] = None,
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs after pruning.")] = 0,
    finetune_steps: Annotated[
        int | None, typer.Option(help="Stop fine-tuning after this many steps.")
    ] = None,
    distill: Annotated[
        bool,
        typer.Option(
            help="Fine-tune by distilling from the unpruned model (alpha 0.5, temperature 2; "
            "a recipe's finetune.distill sets them)."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/prune"),
) -> None:
    """Prune a model from a YAML recipe, or from options."""
    if recipe_file is not None:
        recipe = _guarded(lambda: load_recipe(recipe_file))
    else:
        given = {
            "estimator": estimator, "granularity": granularity, "sparsity": sparsity,
            "target": target, "scope": scope, "surgery": surgery, "exclude": exclude,
        }  # fmt: skip
        prune_spec = {k: v for k, v in given.items() if v is not None}
        prune_spec.update(_guarded(lambda: key_values(set_option or [], "--set")))
        train: dict[str, Any] = {} if train_epochs is None else {"epochs": train_epochs}
        spec = {
            "model": {
                "name": model,
                "kwargs": _guarded(lambda: key_values(model_arg or [], "--model-arg")),
                "weights": str(weights) if weights else None,
                "checkpoint": str(checkpoint) if checkpoint else None,
            },
            "data": {"dataset": data, "batch_size": batch_size, "train_limit": data_limit},
            "train": train,
            "example_shape": input_shape,
            "prune": prune_spec,
            "finetune": {
                "epochs": finetune_epochs,
                "max_steps": finetune_steps,
                "distill": {} if distill else None,
            },
            "output": {"dir": str(out)},
        }
        recipe = _guarded(lambda: parse_recipe(spec, "command line"))
    _run(recipe, command=" ".join(["prunekit", *sys.argv[1:]]))


def _run(recipe: Recipe, command: str = "prunekit") -> None:
    from prunekit.pipeline import run_recipe

    report = _guarded(
        lambda: run_recipe(recipe, progress=sys.stderr.isatty(), log=_log, command=command)
    )
    for table in views.job_tables(report):
        console.print(table)
    for name, path in report.files.items():
        console.print(f"wrote {name}: {path}", highlight=False)


def _not_layer(granularity: str, command: str) -> None:
    from prunekit.surgery.layers import is_layer_granularity

    if is_layer_granularity(granularity):
        raise ConfigError(
            f"prunekit {command} does not take granularity 'layer' yet; whole blocks are scored "
            "and removed by: prunekit prune --granularity layer --estimator angular|oracle|..."
        )


def _dense(
    model: str, checkpoint: Path | None, dataset: str, train_epochs: int, limit: int | None
) -> tuple[Any, Any]:
    from prunekit.pipeline import dense_model, recipe_data

    recipe = parse_recipe(
        {
            "model": {"name": model, "checkpoint": str(checkpoint) if checkpoint else None},
            "data": {"dataset": dataset, "train_limit": limit},
            "train": {"epochs": train_epochs},
            "prune": {"sparsity": 0.5},
        },
        "command line",
    )
    data = recipe_data(recipe)
    return dense_model(recipe, data.train, data.example, sys.stderr.isatty(), _log), data


@app.command()
def score(
    model: Annotated[str, typer.Option(help="Reference model name.")] = "lenet-5",
    checkpoint: Annotated[Path | None, typer.Option(help="prunekit save directory.")] = None,
    dataset: Annotated[str, typer.Option(help="Data set name.")] = "mnist",
    estimator: Annotated[str, typer.Option(help="Importance estimator.")] = "magnitude",
    granularity: Annotated[str, typer.Option(help="Granularity.")] = "channel",
    batches: Annotated[int, typer.Option(help="Batches of scoring data.")] = 8,
    train_epochs: Annotated[int, typer.Option(help="Dense training epochs (no checkpoint).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write scores as JSON here.")] = None,
) -> None:
    """Score every unit of a model and summarise the scores per layer."""
    import prunekit

    def run() -> prunekit.ScoreResult:
        _not_layer(granularity, "score")
        dense, data = _dense(model, checkpoint, dataset, train_epochs, None)
        return prunekit.score(
            dense, granularity=granularity, estimator=estimator, data=data.train, n_batches=batches
        )

    result = _guarded(run)
    console.print(views.scores_table(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: v.tolist() for k, v in result.scores.items()}))
        console.print(f"wrote scores: {out}", highlight=False)


@app.command()
def grade(
    model: Annotated[str, typer.Option(help="Reference model name.")] = "lenet-5",
    checkpoint: Annotated[Path | None, typer.Option(help="prunekit save directory.")] = None,
    dataset: Annotated[str, typer.Option(help="Data set name.")] = "mnist",
    granularity: Annotated[str, typer.Option(help="Granularity.")] = "channel",
    estimators: Annotated[
        str | None, typer.Option(help="Comma-separated names (default all).")
    ] = None,
    batches: Annotated[int, typer.Option(help="Batches of scoring data (oracle included).")] = 4,
    train_epochs: Annotated[int, typer.Option(help="Dense training epochs (no checkpoint).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the grading as JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG bar chart here.")] = None,
) -> None:
    """Grade every estimator against the loss-change oracle (Spearman and Kendall)."""
    from prunekit.analysis.grading import grade_model

    def run() -> Any:
        _not_layer(granularity, "grade")
        dense, data = _dense(model, checkpoint, dataset, train_epochs, None)
        names = [n.strip() for n in estimators.split(",")] if estimators else None
        kwargs: dict[str, Any] = {"estimators": names} if names else {}
        return grade_model(
            dense, granularity=granularity, data=data.train, n_batches=batches, **kwargs
        )

    result = _guarded(run)
    console.print(result.table())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2))
        console.print(f"wrote grading: {out}", highlight=False)
    if plot is not None:
        from prunekit.report.plots import plot_correlations

        rows = {
            r["estimator"]: {"spearman": r["spearman"], "kendall": r["kendall"]}
            for r in result.to_dict()["rows"]
            if r.get("status", "ok") == "ok"
        }
        console.print(f"wrote plot: {plot_correlations(rows, plot)}", highlight=False)


if __name__ == "__main__":
    app()
