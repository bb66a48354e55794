"""``prunekit export``: a save directory to ONNX, ``torch.export`` or OpenVINO, checked against
PyTorch in the target runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from torch import nn

from prunekit.errors import ConfigError, PrunekitError
from prunekit.export import ExportReport, export_model
from prunekit.io import read_metadata
from prunekit.persist import load
from prunekit.sources import example_from_shape, load_model

_SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2", "openvino": ".xml"}


def _model_and_example(
    directory: Path, spec: str | None, input_shape: str | None
) -> tuple[nn.Module, Any]:
    """The saved (pruned) model, rebuilt from ``spec`` or the architecture the save names, and
    an example input: ``input_shape``, else the model's ``example_input()``, else the input
    shape its family declares."""
    arch = read_metadata(directory).arch or {}
    spec = spec or arch.get("model")
    declared: tuple[int, ...] | None = None
    if spec:
        kwargs = (arch.get("kwargs") or {}) if spec == arch.get("model") else {}
        source = load_model(str(spec), kwargs=kwargs)
        declared = source.input_shape
        model = load(directory, source.model)
    else:
        model = load(directory)
    if input_shape is not None:
        return model, example_from_shape(input_shape)
    make = getattr(model, "example_input", None)
    if callable(make):
        return model, make()
    if declared is None:
        raise ConfigError(
            f"the model saved in {directory} does not declare its input shape: pass "
            "--input-shape, e.g. 1x3x224x224"
        )
    return model, example_from_shape(declared)


def export_command(
    directory: Annotated[Path, typer.Argument(help="prunekit save directory (prunekit.save).")],
    format: Annotated[
        str, typer.Option("--format", help="onnx, torch-export or openvino.")
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(help="File to write [default: DIRECTORY/model.onnx, .pt2 or .xml]."),
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(help="Shape of one example input, e.g. 1x3x224x224 (default: the model's)."),
    ] = None,
    atol: Annotated[
        float, typer.Option(help="Parity tolerance, scaled by max(1, max |output|).")
    ] = 1e-4,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model spec to rebuild the dense architecture (torchvision:NAME, ...) when the "
            "save does not name it.",
        ),
    ] = None,
) -> None:
    """Export a saved (pruned) model and check it against PyTorch in the target runtime: the
    file is written only when the outputs match at two batch sizes."""
    console = Console()

    def run() -> ExportReport:
        pruned, example = _model_and_example(directory, model, input_shape)
        target = out if out is not None else directory / f"model{_SUFFIX.get(format, '')}"
        return export_model(pruned, example, target, format=format, atol=atol)

    try:
        report = run()
    except PrunekitError as err:
        message = " ".join(str(err).split())
        Console(stderr=True).print(
            f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    console.print(report.line(), highlight=False, soft_wrap=True)
