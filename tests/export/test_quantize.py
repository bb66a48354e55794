"""INT8 static quantisation of an exported model: QDQ nodes, per-channel scales, the report."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.export.quantize import compare_int8, quantize_onnx, split_batch

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))
pytestmark = pytest.mark.skipif(not HAS_ONNX, reason="onnx runtimes are not installed")


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images[:256], dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(bunch.target[:256])


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small convolutional classifier fitted in a few steps on real digits, as ONNX."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )
    x, y = _digits()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(25):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("int8") / "fp32.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter: a second where dynamo takes ten
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (x[:2],), str(path), dynamo=False,
            input_names=["input"], dynamic_axes={"input": {0: "batch"}},
        )  # fmt: skip
    return path


def test_int8_file_has_qdq_nodes_per_channel_scales_and_keeps_accuracy(
    fp32_file: Path, tmp_path: Path
) -> None:
    import onnx

    x, y = _digits()
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    report = quantize_onnx(fp32_file, tmp_path / "int8.onnx", calibration=batches)
    graph = onnx.load(str(report.path)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = {
        tuple(t.dims) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    }
    assert (8, 1, 3, 3) in int8_weights  # the convolution's weight is stored as int8
    conv_scale = [
        n for n in graph.node if n.op_type == "DequantizeLinear" and "weight" in n.input[0].lower()
    ]
    scales = {t.name: tuple(t.dims) for t in graph.initializer}
    assert any(scales.get(n.input[1]) == (8,) for n in conv_scale)  # one scale per out-channel
    assert report.calibration_batches == 8 and report.calibration_samples == 256
    assert report.evaluated_samples == 256  # no evaluation data: the calibration batches
    assert report.int8_bytes < report.fp32_bytes
    assert report.agreement is not None and report.agreement >= 0.95
    assert report.fp32_accuracy is not None and report.int8_accuracy is not None
    assert abs(report.fp32_accuracy - report.int8_accuracy) <= 0.03
    assert "top-1 agreement" in report.line() and "accuracy fp32" in report.line()


def test_comparing_a_file_with_itself_counts_accuracy_by_hand(fp32_file: Path) -> None:
    import onnxruntime as ort

    x, _ = _digits()
    logits = ort.InferenceSession(str(fp32_file)).run(None, {"input": x[:8].numpy()})[0]
    predicted = logits.argmax(axis=1)
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 10  # 3 of 8 wrong on purpose: accuracy 5/8
    result = compare_int8(fp32_file, fp32_file, [(x[:4], labels[:4]), (x[4:8], labels[4:8])])
    assert result.samples == 8 and result.max_abs_diff == 0.0 and result.agreement == 1.0
    assert result.fp32_accuracy == result.int8_accuracy == 5 / 8


def test_batches_without_labels_give_no_accuracy(fp32_file: Path) -> None:
    x, _ = _digits()
    result = compare_int8(fp32_file, fp32_file, [x[:5]])
    assert result.samples == 5 and result.fp32_accuracy is None and result.int8_accuracy is None


def test_split_batch_reads_tensors_arrays_and_pairs() -> None:
    x = torch.ones(2, 3)
    inputs, labels = split_batch((x, torch.tensor([1, 0])))
    assert inputs.dtype == np.float32 and inputs.shape == (2, 3)
    assert labels is not None and labels.tolist() == [1, 0]
    assert split_batch(np.zeros((1, 2)))[1] is None
    assert split_batch([x, torch.ones(2, 5)])[1] is None  # not class labels
    with pytest.raises(ConfigError, match="tensor, an array or an"):
        split_batch(("text", 1))


def test_bad_arguments_are_config_errors(fp32_file: Path, tmp_path: Path) -> None:
    x, _ = _digits()
    with pytest.raises(ConfigError, match="would overwrite the FP32 model"):
        quantize_onnx(fp32_file, fp32_file, calibration=[x[:4]])
    with pytest.raises(ConfigError, match="is not a file"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "o.onnx", calibration=[x[:4]])
    with pytest.raises(ConfigError, match="calibration gave no batch"):
        quantize_onnx(fp32_file, tmp_path / "o.onnx", calibration=[])
    with pytest.raises(ConfigError, match="'kl' is not one of minmax, entropy, percentile"):
        quantize_onnx(fp32_file, tmp_path / "o.onnx", calibration=[x[:4]], method="kl")
    assert not (tmp_path / "o.onnx").exists()


def test_cli_int8_needs_onnx_and_calibration_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from prunekit.cli.main import app

    runner = CliRunner()
    wrong = runner.invoke(app, ["export", str(tmp_path), "--format", "openvino", "--int8"])
    assert wrong.exit_code == 2 and "--int8 quantises ONNX files" in wrong.output
    missing = runner.invoke(app, ["export", str(tmp_path), "--int8"])
    assert missing.exit_code == 2 and "--int8 needs --calibration DATASET" in missing.output
