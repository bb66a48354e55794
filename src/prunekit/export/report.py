"""What an export returns (:class:`ExportReport`) and what it raises (:class:`ExportError`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunekit.errors import PrunekitError

FORMATS: tuple[str, ...] = ("onnx", "torch-export", "openvino")
"""Export formats: an ONNX file, a ``torch.export`` program (``.pt2``), an OpenVINO IR (``.xml``
with its ``.bin``)."""


class ExportError(PrunekitError, RuntimeError):
    """A model could not be exported, its runtime is not installed, or the exported model does
    not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class ExportReport:
    """One export and its parity check.

    Attributes:
        path: the file written.
        format: ``"onnx"``, ``"torch-export"`` or ``"openvino"``.
        max_abs_diff: the largest ``|exported - torch|`` over every output and checked batch
            size (``None`` with ``check=False``).
        max_rel_diff: the same, divided by the largest ``|torch|`` of that output.
        runtime: what ran the exported model for the check, with its version.
        seconds: wall time of the export and its check.
        exporter: the exporter that produced the file (``"dynamo"`` or ``"torchscript"`` for
            ONNX, ``"torch.export"``, ``"openvino.convert_model"``).
        batch_sizes: the batch sizes the exported model was checked at.
    """

    path: Path
    format: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    runtime: str | None
    seconds: float
    exporter: str = ""
    batch_sizes: tuple[int, ...] = ()

    @property
    def checked(self) -> bool:
        return self.max_abs_diff is not None

    def line(self) -> str:
        """One line for a log or the command line."""
        how = f"{self.format} via {self.exporter}" if self.exporter else self.format
        if not self.checked:
            return f"exported {self.path} ({how}) in {self.seconds:.1f} s; parity not checked"
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        return (
            f"exported {self.path} ({how}) in {self.seconds:.1f} s; parity in {self.runtime} at "
            f"batch {sizes}: max |exported - torch| = {self.max_abs_diff:.3g} "
            f"(relative {self.max_rel_diff:.3g})"
        )
