"""A recipe's ``export:`` section: what to export the pruned model to, checked before the job
runs, and :func:`run_export_section` that writes it after pruning.

```yaml
export:
  format: onnx            # onnx | openvino | torch-export
  dynamic_batch: true     # dimension 0 of every input dynamic (checked at two batch sizes)
  int8: true              # ONNX only: also an INT8 copy (static, QDQ, per-channel weights)
  calibration: fashion-mnist   # registered data set: train split calibrates, test split compares
  calibration_samples: 512
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from prunekit.data import DATASETS, load_dataset, make_loader
from prunekit.errors import ConfigError, closest
from prunekit.export.api import export_model
from prunekit.export.quantize import QuantizeReport, quantize_onnx
from prunekit.export.report import FORMATS, ExportReport
from prunekit.measure.inputs import ExampleInputs
from prunekit.validation import as_value_error, describe_errors, error_class

FILE_NAMES: dict[str, str] = {
    "onnx": "model.onnx",
    "openvino": "model.xml",
    "torch-export": "model.pt2",
}
"""The file each format writes in the output folder (OpenVINO adds ``model.bin``)."""


class ExportSection(BaseModel):
    """The ``export:`` section of a recipe (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field("onnx", description="onnx, openvino or torch-export.")
    dynamic_batch: bool = Field(True, description="Make dimension 0 of every input dynamic.")
    int8: bool = Field(False, description="Also write an INT8 ONNX copy (format onnx only).")
    calibration: str | None = Field(
        None, description="Registered data set: its train split calibrates INT8, test compares."
    )
    calibration_samples: int = Field(512, ge=1, description="Training samples calibrating INT8.")
    atol: float = Field(1e-4, gt=0, description="Parity tolerance of the exported model.")

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(
                f"format {value!r} is not one of {', '.join(FORMATS)}{closest(value, FORMATS)}"
            )
        return value

    @field_validator("calibration")
    @classmethod
    def _calibration(cls, value: str | None) -> str | None:
        if value is not None:
            as_value_error(DATASETS.get, value)
        return value

    @model_validator(mode="after")
    def _int8(self) -> ExportSection:
        if self.int8 and self.format != "onnx":
            raise ValueError(f"int8 quantises ONNX files; got format {self.format!r} (use onnx)")
        if self.int8 and self.calibration is None:
            raise ValueError("int8 needs calibration: a registered data set, e.g. fashion-mnist")
        return self

    @property
    def file_name(self) -> str:
        """The exported file's name in the output folder."""
        return FILE_NAMES[self.format]


def parse_export_section(data: ExportSection | Mapping[str, Any] | None) -> ExportSection | None:
    """The section from a recipe's mapping (``None`` stays ``None``: no export); a bad field
    is a :class:`~prunekit.errors.ConfigError` naming ``export.<field>``."""
    if data is None or isinstance(data, ExportSection):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"recipe export: must be a mapping, got {type(data).__name__}")
    try:
        return ExportSection.model_validate(dict(data))
    except ValidationError as err:
        raise error_class(err)(f"recipe {describe_errors(err, 'export')}") from None


@dataclass(frozen=True)
class ExportSectionReport:
    """What an ``export:`` section wrote: the checked export, and the INT8 copy if asked."""

    export: ExportReport
    int8: QuantizeReport | None = None

    def line(self) -> str:
        """One line for a log."""
        text = self.export.line()
        return text if self.int8 is None else f"{text}; {self.int8.line()}"


def _model_of(result_or_model: Any) -> nn.Module:
    model = result_or_model if isinstance(result_or_model, nn.Module) else None
    model = getattr(result_or_model, "model", model)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "an export section needs an nn.Module or a result with a .model, got "
            f"{type(result_or_model).__name__}"
        )
    return model


def run_export_section(
    result_or_model: Any,
    section: ExportSection | Mapping[str, Any],
    out_dir: str | Path,
    *,
    example_inputs: ExampleInputs,
    data_root: str | Path | None = None,
) -> ExportSectionReport:
    """Export the pruned model (an ``nn.Module``, or a result's ``.model``) as ``section`` says
    into ``out_dir`` (:data:`FILE_NAMES`), checked against PyTorch; with ``int8`` also
    ``model.int8.onnx``, calibrated on ``calibration_samples`` of the named data set's train
    split (read from ``data_root``) and compared with FP32 on its test split."""
    parsed = parse_export_section(section)
    assert parsed is not None
    model = _model_of(result_or_model)
    path = Path(out_dir) / parsed.file_name
    report = export_model(model, example_inputs, path, format=parsed.format,
                          dynamic_batch=parsed.dynamic_batch, atol=parsed.atol)  # fmt: skip
    if not parsed.int8:
        return ExportSectionReport(report)
    assert parsed.calibration is not None
    train = load_dataset(parsed.calibration, "train", data_root)
    test = load_dataset(parsed.calibration, "test", data_root)
    int8 = quantize_onnx(
        report.path,
        report.path.with_suffix(".int8.onnx"),
        calibration=make_loader(train, 64, limit=parsed.calibration_samples),
        evaluation=make_loader(test, 256),
    )
    return ExportSectionReport(report, int8)
