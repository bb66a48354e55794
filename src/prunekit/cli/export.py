"""``prunekit export``: a save directory to ONNX, ``torch.export`` or OpenVINO, checked against
PyTorch in the target runtime; with ``--int8`` also an INT8 ONNX copy calibrated on real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from torch import nn

from prunekit.data import load_dataset, make_loader
from prunekit.errors import ConfigError, PrunekitError
from prunekit.export import ExportReport, export_model
from prunekit.export.quantize import QuantizeReport, quantize_onnx
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
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="Also write an INT8 ONNX copy (static, QDQ, per-channel weights)."
        ),
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="Data set whose train split calibrates --int8 and whose test split "
            "compares INT8 with FP32 (mnist, fashion-mnist, digits, ...)."
        ),
    ] = None,
    calibration_samples: Annotated[
        int, typer.Option(help="Training samples used for INT8 calibration.")
    ] = 512,
) -> None:
    """Export a saved (pruned) model and check it against PyTorch in the target runtime: the
    file is written only when the outputs match at two batch sizes. With ``--int8`` (ONNX only)
    an INT8 copy (``*.int8.onnx``) is calibrated on ``--calibration`` data and compared with FP32
    on its test split."""
    console = Console()

    def run() -> tuple[ExportReport, QuantizeReport | None]:
        if int8:
            _check_int8(format, calibration, calibration_samples)
        pruned, example = _model_and_example(directory, model, input_shape)
        target = out if out is not None else directory / f"model{_SUFFIX.get(format, '')}"
        report = export_model(pruned, example, target, format=format, atol=atol)
        if not int8:
            return report, None
        assert calibration is not None
        quantized = quantize_onnx(
            report.path,
            report.path.with_suffix(".int8.onnx"),
            calibration=make_loader(
                load_dataset(calibration, "train"), 64, limit=calibration_samples
            ),
            evaluation=make_loader(load_dataset(calibration, "test"), 256),
        )
        return report, quantized

    try:
        report, quantized = run()
    except PrunekitError as err:
        message = " ".join(str(err).split())
        Console(stderr=True).print(
            f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    console.print(report.line(), highlight=False, soft_wrap=True)
    if quantized is not None:
        console.print(quantized.line(), highlight=False, soft_wrap=True)


def _check_int8(format: str, calibration: str | None, samples: int) -> None:
    if format != "onnx":
        raise ConfigError(f"--int8 quantises ONNX files; got --format {format} (use onnx)")
    if calibration is None:
        raise ConfigError(
            "--int8 needs --calibration DATASET (a registered data set, e.g. fashion-mnist): "
            "activation ranges are set from real inputs"
        )
    if samples < 1:
        raise ConfigError(f"--calibration-samples must be >= 1, got {samples}")
