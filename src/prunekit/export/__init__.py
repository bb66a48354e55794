"""Export a (pruned) model to ONNX, a ``torch.export`` program or OpenVINO, checked against
PyTorch in the target runtime, and time it there.

``export_model(model, example_inputs, "model.onnx")`` writes the file only after the exported
model reproduced PyTorch's outputs at two batch sizes; ``runtime_latency(...)`` times a model or
an exported file in torch, onnxruntime or OpenVINO with pinned threads.
"""

from prunekit.export.api import export_model
from prunekit.export.latency import interleaved_latency, runtime_latency, runtime_runner
from prunekit.export.quantize import QuantizeReport, compare_int8, quantize_onnx
from prunekit.export.report import FORMATS, ExportError, ExportReport

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportReport",
    "QuantizeReport",
    "compare_int8",
    "export_model",
    "interleaved_latency",
    "quantize_onnx",
    "runtime_latency",
    "runtime_runner",
]
