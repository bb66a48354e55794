"""INT8 after pruning: static post-training quantisation of an ONNX file in onnxruntime.

Pruning and quantisation compose: surgery makes every layer narrower, quantisation makes every
remaining weight and activation 8-bit. :func:`quantize_onnx` runs onnxruntime's static
quantiser (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference") in QDQ form with per-channel symmetric weights and
activation ranges calibrated (min-max) on batches of real data, then runs the FP32 and the INT8
file side by side on evaluation batches. The difference is reported, not refused: an INT8 model
never reproduces FP32 to 1e-4, so the report gives the largest absolute difference, how often
the two agree on the arg-max, and, where the batches carry labels, both accuracies.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import ConfigError
from prunekit.export.report import ExportError
from prunekit.export.runtimes import ort_session, require

CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeReport:
    """What quantisation produced and how far INT8 lands from FP32 on the evaluation batches.

    Attributes:
        path: the INT8 file.
        calibration_batches / calibration_samples: data the activation ranges were set from.
        evaluated_samples: samples both models ran on for the comparison (0: none given).
        max_abs_diff: largest |FP32 - INT8| over every output value compared.
        agreement: fraction of samples whose arg-max over the last axis of the first output is
            the same in both models (``None`` without evaluation data).
        fp32_accuracy / int8_accuracy: top-1 accuracy against the labels, where batches have them.
        fp32_bytes / int8_bytes: file sizes.
    """

    path: Path
    calibration_batches: int
    calibration_samples: int
    evaluated_samples: int
    max_abs_diff: float | None
    agreement: float | None
    fp32_accuracy: float | None
    int8_accuracy: float | None
    fp32_bytes: int
    int8_bytes: int
    seconds: float

    def line(self) -> str:
        """One line for a terminal or a log."""
        text = (
            f"int8 {self.path} ({self.int8_bytes / 1e6:.2f} MB, fp32 {self.fp32_bytes / 1e6:.2f} "
            f"MB), calibrated on {self.calibration_samples} samples"
        )
        if self.max_abs_diff is not None and self.agreement is not None:
            text += (
                f"; vs fp32 on {self.evaluated_samples}: max abs diff {self.max_abs_diff:.3g}, "
                f"top-1 agreement {100 * self.agreement:.2f}%"
            )
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            text += (
                f", accuracy fp32 {100 * self.fp32_accuracy:.2f}% "
                f"int8 {100 * self.int8_accuracy:.2f}%"
            )
        return text


def split_batch(batch: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The input array and the labels (or ``None``) of one batch: a tensor or array, or a
    ``(inputs, labels, ...)`` tuple or list as a ``DataLoader`` yields it."""
    labels: Any = None
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ConfigError("a calibration or evaluation batch is an empty tuple")
        inputs, labels = batch[0], batch[1] if len(batch) > 1 else None
    else:
        inputs = batch
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    if not isinstance(inputs, np.ndarray):
        raise ConfigError(
            "a calibration or evaluation batch is a tensor, an array or an (inputs, labels) "
            f"pair, got {type(inputs).__name__}"
        )
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if labels is not None and not (isinstance(labels, np.ndarray) and labels.ndim == 1):
        labels = None  # not class labels (e.g. a second input or a target map): no accuracy
    return inputs.astype(np.float32, copy=False), labels


def _batches(source: Iterable[Any], limit: int | None, what: str) -> list[Any]:
    taken: list[Any] = []
    for batch in source:
        if limit is not None and len(taken) >= limit:
            break
        taken.append(batch)
    if not taken:
        raise ConfigError(f"{what} gave no batch: pass a non-empty loader or list of batches")
    return taken


class _Reader:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of batches: ``get_next``
    returns one feed dict per call, then ``None``."""

    def __init__(self, input_name: str, batches: list[Any]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            {input_name: split_batch(b)[0]} for b in batches
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - only entropy/percentile calibrators rewind
        raise ExportError("calibration data cannot be replayed; pass a list of batches")


def _method(name: str) -> Any:
    quantization = require("onnxruntime.quantization", "INT8 quantisation")
    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }
    if name not in methods:
        raise ConfigError(
            f"calibration method {name!r} is not one of {', '.join(CALIBRATION_METHODS)}"
        )
    return methods[name]


def _preprocessed(source: Path, folder: Path) -> Path:
    """The model after onnxruntime's recommended pre-processing (shape inference, graph
    optimisation folding BatchNorm into convolutions); the original if that fails."""
    shape_inference = require("onnxruntime.quantization.shape_inference", "INT8 quantisation")
    target = folder / "pre.onnx"
    try:
        shape_inference.quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; static quantisation works without
        return source
    return target


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    calibration: Iterable[Any],
    evaluation: Iterable[Any] | None = None,
    max_calibration_batches: int | None = 32,
    max_evaluation_batches: int | None = None,
    per_channel: bool = True,
    method: str = "minmax",
) -> QuantizeReport:
    """Write an INT8 (QDQ, per-channel weights) copy of the FP32 ONNX file ``onnx_path`` to
    ``out_path`` and compare the two in onnxruntime.

    Args:
        calibration: batches (tensors, arrays or ``(inputs, labels)`` pairs, e.g. a
            ``DataLoader``) that set the activation ranges; at most ``max_calibration_batches``
            are used.
        evaluation: batches both models run on for the report (``None``: the calibration
            batches, which flatters INT8 a little; pass held-out data for an honest number).
        per_channel: one weight scale per output channel (recommended for convolutions).
        method: activation range calibration, ``"minmax"``, ``"entropy"`` or ``"percentile"``.

    The file is written under a temporary name and moved over ``out_path`` when complete.
    """
    quantization = require("onnxruntime.quantization", "INT8 quantisation")
    source = Path(onnx_path)
    if not source.is_file():
        raise ConfigError(f"quantize_onnx: {source} is not a file (export the model first)")
    target = Path(out_path)
    if target.resolve() == source.resolve():
        raise ConfigError(f"quantize_onnx: out_path {target} would overwrite the FP32 model")
    calibrate = _method(method)
    start = time.perf_counter()
    batches = _batches(calibration, max_calibration_batches, "calibration")
    input_name = ort_session(source, threads=None).get_inputs()[0].name
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.onnx")
    try:
        with tempfile.TemporaryDirectory(prefix="prunekit-int8-") as folder:
            quantization.quantize_static(
                str(_preprocessed(source, Path(folder))),
                str(temp),
                _Reader(input_name, batches),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=quantization.QuantType.QInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=calibrate,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        os.replace(temp, target)
    except ConfigError:
        raise
    except Exception as err:
        raise ExportError(
            f"INT8 quantisation of {source} failed: {type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"
        ) from err
    finally:
        temp.unlink(missing_ok=True)
    chosen = batches if evaluation is None else _batches(
        evaluation, max_evaluation_batches, "evaluation"
    )  # fmt: skip
    comparison = compare_int8(source, target, chosen)
    return QuantizeReport(
        path=target,
        calibration_batches=len(batches),
        calibration_samples=sum(len(split_batch(b)[0]) for b in batches),
        evaluated_samples=comparison.samples,
        max_abs_diff=comparison.max_abs_diff,
        agreement=comparison.agreement,
        fp32_accuracy=comparison.fp32_accuracy,
        int8_accuracy=comparison.int8_accuracy,
        fp32_bytes=source.stat().st_size,
        int8_bytes=target.stat().st_size,
        seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class Comparison:
    """FP32 vs INT8 on the same batches (see :class:`QuantizeReport`)."""

    samples: int
    max_abs_diff: float
    agreement: float
    fp32_accuracy: float | None
    int8_accuracy: float | None


def compare_int8(
    fp32_path: str | Path, int8_path: str | Path, batches: Iterable[Any], *, threads: int = 1
) -> Comparison:
    """Run both files in onnxruntime on ``batches``: the largest output difference, arg-max
    agreement and, where every batch has labels, both accuracies."""
    sessions = [ort_session(p, threads=threads) for p in (fp32_path, int8_path)]
    name = sessions[0].get_inputs()[0].name
    samples = agree = 0
    correct = [0, 0]
    labelled = True
    max_diff = 0.0
    for batch in batches:
        inputs, labels = split_batch(batch)
        fp32, int8 = (np.asarray(s.run(None, {name: inputs})[0]) for s in sessions)
        max_diff = max(max_diff, float(np.abs(fp32.astype(np.float64) - int8).max()))
        top = [fp32.argmax(axis=-1), int8.argmax(axis=-1)]
        agree += int((top[0] == top[1]).sum())
        samples += len(inputs)
        if labels is None or top[0].shape != labels.shape:
            labelled = False
        else:
            correct = [c + int((t == labels).sum()) for c, t in zip(correct, top, strict=True)]
    if samples == 0:
        raise ConfigError("compare_int8: no evaluation batch was given")
    return Comparison(
        samples=samples,
        max_abs_diff=max_diff,
        agreement=agree / samples,
        fp32_accuracy=correct[0] / samples if labelled else None,
        int8_accuracy=correct[1] / samples if labelled else None,
    )
