"""ONNX export with its parity check in onnxruntime: reference models dense and pruned, dynamic
batch, a failing check that leaves the previous file alone, missing runtimes, unsupported ops."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import prunekit
from prunekit.errors import ConfigError, PrunekitError
from prunekit.export import ExportError, ExportReport, export_model
from prunekit.export.parity import compare_outputs
from prunekit.export.runtimes import ort_session
from prunekit.models import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, ExportReport]:
    """Dense LeNet-5 exported once from a batch-1 example (dynamic batch)."""
    torch.manual_seed(0)
    model = build_model("lenet-5").eval()
    path = tmp_path_factory.mktemp("lenet") / "lenet.onnx"
    return model, path, export_model(model, torch.randn(1, 1, 28, 28), path)


def _check_report(report: ExportReport, path: Path) -> None:
    assert report.path == path and path.exists()
    assert report.format == "onnx" and report.exporter in ("dynamo", "torchscript")
    assert report.runtime is not None and report.runtime.startswith("onnxruntime ")
    # float32 round-off only: far below the 1e-4 tolerance
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    assert report.max_rel_diff is not None and report.max_rel_diff < 1e-5
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def _onnx_params(path: Path) -> int:
    """Float weights in the file (integer initializers are shapes for Reshape)."""
    weights = onnx.load(str(path)).graph.initializer
    return sum(int(np.prod(t.dims)) for t in weights if t.data_type == onnx.TensorProto.FLOAT)


def test_dense_lenet_exports_with_the_dynamo_exporter(
    lenet_onnx: tuple[nn.Module, Path, ExportReport],
) -> None:
    model, path, report = lenet_onnx
    _check_report(report, path)
    assert report.exporter == "dynamo"
    assert report.batch_sizes == (1, 3)  # the example's batch and another
    assert _onnx_params(path) == sum(p.numel() for p in model.parameters())  # 61,706 weights
    assert "parity in onnxruntime" in report.line()


@pytest.mark.parametrize(
    ("name", "pruned"), [("lenet-5", True), ("small-resnet", False), ("small-resnet", True)]
)
def test_reference_models_export_and_match(name: str, pruned: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = model.example_input()
    if pruned:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BatchNorm statistics are not re-estimated here
            result = prunekit.prune(model, x, granularity="channel", sparsity=0.5, metrics=False)
        assert result.structural
        model = result.model
    report = export_model(model, x, tmp_path / "m.onnx")
    _check_report(report, tmp_path / "m.onnx")
    assert report.batch_sizes == (2, 3)
    # the file holds the (pruned) model's weights; BatchNorm folds into the convolutions
    assert _onnx_params(tmp_path / "m.onnx") == pytest.approx(
        sum(p.numel() for p in model.parameters()), rel=0.03
    )


def test_dynamic_batch_runs_at_batch_3_in_onnxruntime(
    lenet_onnx: tuple[nn.Module, Path, ExportReport],
) -> None:
    model, path, _ = lenet_onnx
    session = ort_session(path)
    assert session.get_inputs()[0].shape[0] not in (1, 3)  # symbolic
    x = torch.randn(3, 1, 28, 28)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_static_batch_from_a_training_model_keeps_its_mode(tmp_path: Path) -> None:
    model = build_model("lenet-5").train()
    report = export_model(model, model.example_input(), tmp_path / "m.onnx", dynamic_batch=False)
    assert report.batch_sizes == (2,)
    assert ort_session(tmp_path / "m.onnx").get_inputs()[0].shape == [2, 1, 28, 28]
    assert all(m.training for m in model.modules())


def _perturbed_copy(path: Path, out: Path) -> None:
    """The ONNX file with its largest initializer scaled by 1.5."""
    model = onnx.load(str(path))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = onnx.numpy_helper.to_array(biggest) * 1.5
    biggest.CopyFrom(onnx.numpy_helper.from_array(array, biggest.name))
    onnx.save(model, str(out))


def test_perturbed_weights_fail_the_parity_check(
    lenet_onnx: tuple[nn.Module, Path, ExportReport], tmp_path: Path
) -> None:
    model, path, _ = lenet_onnx
    _perturbed_copy(path, tmp_path / "bad.onnx")
    bad = ort_session(tmp_path / "bad.onnx")
    x = model.example_input()
    (out,) = bad.run(None, {bad.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        reference = [model(x)]
    with pytest.raises(ExportError, match=r"output 0 differs from PyTorch by [0-9.e-]+ \(max"):
        compare_outputs(reference, [out], atol=1e-4, where="onnxruntime at batch 2")


def test_a_failing_check_leaves_the_previous_good_file_intact(
    lenet_onnx: tuple[nn.Module, Path, ExportReport], tmp_path: Path
) -> None:
    model, path, _ = lenet_onnx
    x = model.example_input()
    target = tmp_path / "model.onnx"
    shutil.copyfile(path, target)
    good = target.read_bytes()

    class Noisy(nn.Module):
        """LeNet-5 whose eager forward adds 0.1 that the exported graph does not have."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            if torch.compiler.is_exporting() or torch.jit.is_tracing():
                return out
            return out + 0.1

    with pytest.raises(ExportError) as info:
        export_model(Noisy(model), x, target)
    message = str(info.value)
    assert "\n" not in message
    assert "output 0 differs from PyTorch by 0.1" in message
    assert f"{target} left unchanged" in message
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp file left


def test_nan_always_fails_the_check() -> None:
    reference = [torch.tensor([[1.0, 2.0]])]
    with pytest.raises(ExportError, match="output 0 of the exported model holds NaN"):
        compare_outputs(reference, [np.array([[1.0, np.nan]])], atol=1.0, where="x")
    with pytest.raises(ExportError, match="output 0 of PyTorch's model holds NaN"):
        compare_outputs([torch.tensor([np.inf])], [np.array([1.0])], atol=1.0, where="x")


def test_tolerance_scales_with_the_largest_output() -> None:
    # max |reference| = 1000: tolerance 1e-4 * 1000 = 0.1; a 0.05 difference passes
    reference = [torch.tensor([1000.0, 1.0])]
    parity = compare_outputs(reference, [np.array([1000.05, 1.0])], atol=1e-4, where="x")
    assert parity.max_abs_diff == pytest.approx(0.05, rel=1e-6)
    assert parity.max_rel_diff == pytest.approx(0.05 / 1000, rel=1e-6)
    # below 1 the tolerance stays absolute: 2e-4 > 1e-4 * max(1, 0.5) fails
    with pytest.raises(ExportError, match="output 1 differs .* tolerance 0.0001"):
        compare_outputs(
            [torch.tensor([1.0]), torch.tensor([0.5])],
            [np.array([1.0]), np.array([0.5002])],
            atol=1e-4,
            where="x",
        )


def test_a_missing_runtime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    model = build_model("lenet-5")
    with pytest.raises(ExportError, match=r"pip install prunekit\[openvino\]"):
        export_model(model, model.example_input(), tmp_path / "m.xml", format="openvino")
    assert list(tmp_path.iterdir()) == []


class _Spectrum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(x)


class _WithSvd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.head = nn.Sequential(_Spectrum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.proj(x).reshape(-1, 2, 3))


def test_an_unsupported_op_is_one_line_naming_op_and_module(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_model(_WithSvd(), torch.randn(2, 6), tmp_path / "svd.onnx")
    message = str(info.value)
    assert "\n" not in message
    assert "operator aten._linalg_svd called in module 'head.0' (_Spectrum)" in message
    assert isinstance(info.value, PrunekitError)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    model = build_model("lenet-5")
    with pytest.raises(ConfigError, match="'onx' is not one of .*did you mean 'onnx'"):
        export_model(model, model.example_input(), tmp_path / "m.onnx", format="onx")
    with pytest.raises(ConfigError, match="atol must be a number > 0"):
        export_model(model, model.example_input(), tmp_path / "m.onnx", atol=0)
