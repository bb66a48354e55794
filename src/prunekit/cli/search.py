"""``prunekit search RECIPE``: search the per-layer allocation of a recipe's model under its
``prune.target`` budget (the recipe's ``search:`` section says how), write the trials, the
Pareto front (table, plot, JSON) and a recipe that ``prunekit prune`` replays; with a
``finetune:`` section, fine-tune the chosen model over ``finetune.processes`` processes (DDP)
and write it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from prunekit.errors import ConfigError, PrunekitError

console = Console()
err_console = Console(stderr=True)


def _fail(err: PrunekitError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def search_command(
    recipe_file: Annotated[Path, typer.Argument(help="YAML recipe with a search: section.")],
    trials: Annotated[int | None, typer.Option(help="Override search.trials.")] = None,
    searcher: Annotated[str | None, typer.Option(help="Override search.searcher.")] = None,
    workers: Annotated[int | None, typer.Option(help="Override search.workers.")] = None,
    storage: Annotated[str | None, typer.Option(help="Override search.storage.")] = None,
    space: Annotated[
        str | None, typer.Option(help="Override search.space: group (per layer) or stage.")
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(help="Override search.stages: resolution, or a name depth (an int)."),
    ] = None,
    processes: Annotated[
        int | None, typer.Option(help="Override finetune.processes (DDP ranks).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: the recipe's output.dir).")
    ] = None,
) -> None:
    """Search per-layer sparsities under the recipe's prune.target budget."""
    try:
        rule = int(stages) if stages is not None and stages.strip().isdigit() else stages
        given = {"trials": trials, "searcher": searcher, "workers": workers, "storage": storage,
                 "space": space, "stages": rule, "processes": processes}  # fmt: skip
        _search(recipe_file, given, out)
    except PrunekitError as err:
        raise _fail(err) from None


def _search(recipe_file: Path, given: dict[str, Any], out: Path | None) -> None:
    from prunekit.search import search
    from prunekit.search.spec import budget_of, default_storage, split_recipe

    try:
        data = yaml.safe_load(recipe_file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"recipe file {str(recipe_file)!r} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{recipe_file}: not valid YAML: {err}") from None
    changes = {k: v for k, v in given.items() if v is not None}
    recipe, spec = split_recipe(data, str(recipe_file), overrides=changes)
    if out is not None:
        recipe = recipe.model_copy(update={"output": recipe.output.model_copy(update={"dir": out})})
    model, example, loader, test = _load(recipe)
    settings = spec.config.replace(storage=default_storage(recipe, spec))
    result = search(
        model, example, data=loader, target=budget_of(recipe, spec), config=settings,
        prune=recipe.prune, progress=sys.stderr.isatty(),
    )  # fmt: skip
    folder = Path(recipe.output.dir)
    replay = recipe.model_copy(
        update={"output": recipe.output.model_copy(update={"dir": folder / "best"})}
    )
    files = {
        "trials": result.write_json(folder / "search.json"),
        "plot": result.plot(folder / "pareto.png"),
        "recipe": result.write_recipe(folder / "best.yaml", replay),
    }
    console.print(result.table())
    best = result.best
    console.print(
        f"best: trial {best.number}, score {best.score:.4f}, MACs kept {best.macs:.3f}, "
        f"params kept {best.params:.3f}",
        highlight=False,
    )
    if result.uniform is not None:
        console.print(f"uniform allocation: trial 0, score {result.uniform.score:.4f}")
    if result.measured is not None:
        console.print(
            f"best trial timed in {result.target.runtime}: {result.measured:.3f} of the dense "
            f"latency (the table predicted {best.latency:.3f})",
            highlight=False,
        )
    if recipe.finetune.epochs or recipe.finetune.max_steps:
        files["model"] = _finetune(recipe, settings.processes, model, example, loader, test, result)
    for name, path in files.items():
        console.print(f"{name}: {path}", highlight=False)


def _finetune(
    recipe: Any, processes: int, model: Any, example: Any, loader: Any, test: Any, result: Any
) -> Path:
    """Prune the chosen allocation, fine-tune it over ``processes`` DDP ranks, write it."""
    from prunekit.pipeline import arch_kwargs, prune_with
    from prunekit.search.finetune import ddp_config, finetune_chosen
    from prunekit.train import evaluate

    replay = recipe.model_copy(update={"prune": result.prune_config()})
    chosen = prune_with(replay, model, loader, example)  # as `prunekit prune best.yaml`
    dataset = loader.dataset
    config = ddp_config(recipe.finetune, recipe.data.batch_size, len(dataset), recipe.seed)
    before = evaluate(chosen.model, test).accuracy
    done = finetune_chosen(
        chosen.model, dataset, config, processes=processes, threads=recipe.threads or 1
    )
    after = evaluate(chosen.model, test).accuracy
    console.print(
        f"fine-tuned the chosen model: {done.steps} steps on {done.processes} process(es) in "
        f"{done.seconds:.1f} s, test accuracy {100 * before:.2f}% -> {100 * after:.2f}%",
        highlight=False,
    )
    arch = {"model": recipe.model.name, "kwargs": arch_kwargs(chosen.model, recipe)}
    extra = {"recipe": recipe.model_dump(mode="json"), "finetune_losses": list(done.losses)}
    return chosen.save(Path(recipe.output.dir) / "best" / "model", arch=arch, extra=extra)


def _load(recipe: Any) -> tuple[Any, Any, Any, Any]:
    """The recipe's dense model, example inputs, training and test loaders, built as
    ``prunekit prune`` builds them (same seed, same order), so the chosen recipe replays on the
    same model."""
    from prunekit.pipeline import dense_model, example_inputs, model_source, recipe_data
    from prunekit.sources import example_from_shape
    from prunekit.train import seed_everything

    seed_everything(recipe.seed)
    if recipe.threads is not None:
        import torch

        torch.set_num_threads(recipe.threads)
    source = model_source(recipe)
    data = recipe_data(recipe, source)
    if recipe.example_shape is not None:
        data = dataclasses.replace(data, example=example_from_shape(recipe.example_shape))
    model = dense_model(
        recipe, data.train, data.example, False, lambda _: None, source, data.num_classes
    )
    return model, example_inputs(model, data.example), data.train, data.test
