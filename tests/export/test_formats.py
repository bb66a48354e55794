"""torch.export programs and OpenVINO IR with their parity checks; PruneResult.export; the
``export`` command on a save directory; a torchvision ResNet-18 pruned and exported (slow)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import prunekit
from prunekit.cli.export import export_command
from prunekit.export import export_model
from prunekit.export.torch_export import load_program
from prunekit.models import build_model

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


def _pruned_small_resnet() -> tuple[prunekit.PruneResult, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("small-resnet").eval()
    x = model.example_input()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BatchNorm statistics are not re-estimated here
        result = prunekit.prune(model, x, granularity="channel", sparsity=0.5, metrics=False)
    return result, x


def test_torch_export_program_reloads_and_matches(tmp_path: Path) -> None:
    result, x = _pruned_small_resnet()
    report = export_model(result.model, x, tmp_path / "m.pt2", format="torch-export")
    assert report.exporter == "torch.export" and report.batch_sizes == (2, 3)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    program = load_program(tmp_path / "m.pt2")
    x5 = torch.randn(5, *x.shape[1:])
    with torch.no_grad():
        assert torch.allclose(program(x5), result.model(x5), atol=1e-5)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")
def test_openvino_ir_matches_and_keeps_float32(tmp_path: Path) -> None:
    result, x = _pruned_small_resnet()
    report = export_model(result.model, x, tmp_path / "m.xml", format="openvino")
    assert report.runtime is not None and report.runtime.startswith("openvino ")
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    weights = sum(p.numel() for p in result.model.parameters())
    # float32 weights (4 bytes each, BatchNorm folded or not), not float16
    assert (tmp_path / "m.bin").stat().st_size >= 4 * weights * 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]


@pytest.mark.skipif(not HAS_ONNX, reason="onnx runtimes are not installed")
def test_prune_result_export(tmp_path: Path) -> None:
    result, x = _pruned_small_resnet()
    report = result.export(tmp_path / "direct.onnx", example_inputs=x, atol=1e-4)
    assert report.path == tmp_path / "direct.onnx" and report.path.exists()
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5


@pytest.mark.skipif(not HAS_ONNX, reason="onnx runtimes are not installed")
def test_the_export_command_writes_a_checked_file_into_the_save(tmp_path: Path) -> None:
    result, _ = _pruned_small_resnet()
    save = prunekit.save(result, tmp_path / "save", arch={"model": "small-resnet"})
    app = typer.Typer()
    app.command()(export_command)
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    out = CliRunner().invoke(app, ["export-command", str(save), "--atol", "1e-4"])
    assert out.exit_code == 0, out.output
    assert "parity in onnxruntime" in out.output and "batch 2, 3" in out.output
    assert (save / "model.onnx").exists()


def test_the_export_command_error_is_one_line(tmp_path: Path) -> None:
    result, _ = _pruned_small_resnet()
    save = prunekit.save(result, tmp_path / "save", arch={"model": "small-resnet"})
    app = typer.Typer()
    app.command()(export_command)
    app.command("other")(lambda: None)
    out = CliRunner().invoke(app, ["export-command", str(save), "--format", "onx"])
    assert out.exit_code == 2
    assert "error: export format 'onx' is not one of" in out.output
    assert not (save / "model.onnx").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNX, reason="onnx runtimes are not installed")
def test_torchvision_resnet18_pruned_exports_and_matches(tmp_path: Path) -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    result = prunekit.prune(model, x, granularity="channel", sparsity=0.5, metrics=False)
    report = result.export(tmp_path / "r18.onnx", example_inputs=x)
    assert report.exporter == "dynamo" and report.batch_sizes == (1, 3)
    assert report.max_rel_diff is not None and report.max_rel_diff < 1e-5
