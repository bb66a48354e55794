"""A recipe's export section: defaults, one-line errors naming the field, and real exports of
a small conv net (ONNX, OpenVINO, INT8 calibrated on scikit-learn's digits)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.data import load_dataset
from prunekit.errors import ConfigError, UnknownNameError
from prunekit.export.recipe_section import (
    ExportSection,
    parse_export_section,
    run_export_section,
)

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    ).eval()


def test_defaults_and_no_section() -> None:
    section = parse_export_section({})
    assert section == ExportSection(format="onnx", dynamic_batch=True, int8=False)
    assert section is not None and section.file_name == "model.onnx"
    assert parse_export_section(None) is None
    assert parse_export_section({"format": "openvino"}).file_name == "model.xml"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": "onnnx"}, r"recipe export.format: format 'onnnx' is not one of onnx, "
                              r"torch-export, openvino \(did you mean 'onnx'\?\)"),
        ({"int8": True}, "recipe export: int8 needs calibration: a registered data set"),
        ({"int8": True, "format": "openvino", "calibration": "digits"},
         "int8 quantises ONNX files; got format 'openvino'"),
        ({"calibration_samples": 0}, "export.calibration_samples: Input should be greater"),
        ({"dynamic": True}, "export.dynamic: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_sections_are_one_line_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_export_section(data)


def test_an_unknown_calibration_set_is_an_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match="export.calibration: .*'digitz'.*did you mean"):
        parse_export_section({"int8": True, "calibration": "digitz"})
    with pytest.raises(ConfigError, match="export: must be a mapping, got list"):
        parse_export_section(["onnx"])  # type: ignore[arg-type]


@dataclass
class _Result:
    model: nn.Module


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNX, reason="onnx runtimes are not installed")
def test_onnx_export_with_int8_calibrated_on_digits(tmp_path: Path) -> None:
    section = {"format": "onnx", "int8": True, "calibration": "digits", "calibration_samples": 64}
    x = torch.randn(1, 1, 8, 8)
    report = run_export_section(_Result(_net()), section, tmp_path, example_inputs=x)
    assert report.export.path == tmp_path / "model.onnx" and report.export.format == "onnx"
    assert report.export.max_abs_diff is not None and report.export.max_abs_diff < 1e-4
    assert report.int8 is not None and report.int8.path == tmp_path / "model.int8.onnx"
    assert report.int8.calibration_samples == 64  # one batch of 64
    assert report.int8.evaluated_samples == len(load_dataset("digits", "test"))
    assert "int8" in report.line()


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")
def test_openvino_export_of_a_module_and_a_bad_argument(tmp_path: Path) -> None:
    x = torch.randn(1, 1, 8, 8)
    report = run_export_section(_net(), {"format": "openvino"}, tmp_path, example_inputs=x)
    assert report.int8 is None and report.export.path == tmp_path / "model.xml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]
    with pytest.raises(ConfigError, match="needs an nn.Module or a result with a .model, got str"):
        run_export_section("model", {}, tmp_path, example_inputs=x)
