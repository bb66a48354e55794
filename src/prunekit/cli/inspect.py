"""``prunekit inspect MODEL``: what structural pruning can remove from a model, before pruning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from prunekit.cli.options import key_values
from prunekit.errors import ConfigError, PrunekitError
from prunekit.sources import example_from_shape, load_model

console = Console()
err_console = Console(stderr=True)


def inspect_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Model: a reference model name, torchvision:NAME, timm:NAME, hf:DIR, "
            "file.py:FACTORY or package.module:FACTORY."
        ),
    ],
    weights: Annotated[Path | None, typer.Option(help="Weights file or directory.")] = None,
    model_arg: Annotated[
        list[str] | None, typer.Option(help="Model argument KEY=VALUE (a YAML value).")
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(help="Shape of one example input, e.g. 1x3x224x224 (default: the model's)."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Layer name patterns to leave alone.")
    ] = None,
    max_layers: Annotated[int, typer.Option(help="Layers shown per group.")] = 8,
) -> None:
    """Show dependency groups, params and MACs per layer, and what cannot be pruned and why."""
    from prunekit.analysis.inspect import inspect_model
    from prunekit.report.inspect_view import inspection_tables

    def run() -> Any:
        source = load_model(
            model, weights=weights, kwargs=key_values(model_arg or [], "--model-arg")
        )
        example = _example_for(source, input_shape)
        return inspect_model(source.model, example, exclude=tuple(exclude or ()))

    try:
        ins = run()
    except PrunekitError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for table in inspection_tables(ins, max_layers=max_layers):
        console.print(table)


def _example_for(source: Any, shape: str | None) -> Any:
    """Example inputs for tracing: ``shape``, else the model's own ``example_input()``, else
    the input shape its family declares."""
    if shape is not None:
        return example_from_shape(shape)
    make = getattr(source.model, "example_input", None)
    if callable(make):
        return make()
    if source.input_shape is None:
        raise ConfigError(
            f"model {source.spec!r} does not declare its input shape: pass --input-shape, "
            "e.g. 1x3x224x224"
        )
    return example_from_shape(source.input_shape)
