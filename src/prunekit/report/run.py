"""The record of one pruning run, as plain data, for reports (:mod:`prunekit.report.html`).

A :class:`RunReport` holds only strings, numbers and PNG bytes: it is built from the results of a
run (the metric rows of :func:`prunekit.measure.compare`, the keep flags of a selection, a
verification report) and can be rendered without the model or torch.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.measure.runtimes import CLOCKS, check_runtime
from prunekit.measure.summary import Row

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

OPTIONAL_PACKAGES = ("torchvision", "timm", "transformers")
"""Packages whose versions a report lists when they are installed."""


@dataclass(frozen=True)
class LayerRow:
    """One layer (or group) before and after: ``before`` and ``after`` count ``quantity``
    (``"units"``, ``"channels"``, ``"params"``)."""

    name: str
    before: int
    after: int
    quantity: str = "units"

    def __post_init__(self) -> None:
        if self.before < 0 or self.after < 0 or self.after > self.before:
            raise ConfigError(
                f"layer row {self.name!r}: need 0 <= after <= before, got before={self.before} "
                f"after={self.after}"
            )

    @property
    def kept(self) -> float:
        """Fraction kept, ``after / before`` (1 for an empty layer)."""
        return self.after / self.before if self.before else 1.0

    @property
    def sparsity(self) -> float:
        """Fraction removed, ``1 - kept``."""
        return 1.0 - self.kept


class _VerificationReport(Protocol):
    """What :class:`prunekit.surgery.VerificationReport` provides to a report."""

    @property
    def max_abs_diff(self) -> float: ...
    @property
    def tolerance(self) -> float: ...
    @property
    def dtype(self) -> str: ...
    @property
    def unverified(self) -> tuple[str, ...]: ...
    @property
    def vacuous(self) -> bool: ...


@dataclass(frozen=True)
class Verification:
    """Whether the pruned model computes what the original computes with removed units zeroed.

    ``passed`` is ``None`` when verification was skipped; ``note`` says why, or adds a caveat
    (groups that could not be verified, a vacuous comparison).
    """

    passed: bool | None
    max_diff: float | None = None
    tolerance: float | None = None
    dtype: str | None = None
    note: str = ""

    @classmethod
    def skipped(cls, reason: str) -> Verification:
        return cls(passed=None, note=reason)

    @classmethod
    def from_report(cls, report: _VerificationReport) -> Verification:
        """From a surgery verification report: passed when the largest output difference is
        within the tolerance."""
        notes = []
        if report.unverified:
            notes.append(f"not verifiable: {', '.join(report.unverified)}")
        if report.vacuous:
            notes.append("vacuous: every reference output was exactly zero")
        return cls(
            passed=report.max_abs_diff <= report.tolerance,
            max_diff=float(report.max_abs_diff),
            tolerance=float(report.tolerance),
            dtype=str(report.dtype).removeprefix("torch."),
            note="; ".join(notes),
        )

    def line(self) -> str:
        """One line for humans, e.g. ``passed: max |diff| 3.1e-07 <= tolerance 1e-05 (float64)``."""
        if self.passed is None:
            return f"skipped: {self.note}" if self.note else "skipped"
        head = "passed" if self.passed else "FAILED"
        sign = "<=" if self.passed else ">"
        text = head
        if self.max_diff is not None and self.tolerance is not None:
            text += f": max |diff| {self.max_diff:.3g} {sign} tolerance {self.tolerance:.3g}"
        if self.dtype:
            text += f" ({self.dtype})"
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class Plot:
    """A figure as PNG bytes, with the title shown above it (and used as alt text)."""

    title: str
    png: bytes

    def __post_init__(self) -> None:
        if not self.png.startswith(PNG_SIGNATURE):
            raise ConfigError(f"plot {self.title!r}: the image is not a PNG (bad signature)")


@dataclass(frozen=True)
class RuntimeLatency:
    """The dense and the pruned model's forward time in one runtime, at one batch size, by one
    clock (``"cpu"``: the calling thread's CPU time, see
    :class:`~prunekit.budget.latency.RuntimeTimer`; ``"wall"``: elapsed time)."""

    runtime: str
    before_ms: float
    after_ms: float
    batch: int = 1
    clock: str = "cpu"

    def __post_init__(self) -> None:
        check_runtime(self.runtime, "report latency runtime")
        if self.clock not in CLOCKS:
            raise ConfigError(
                f"report latency clock {self.clock!r} is not one of {', '.join(CLOCKS)}"
            )
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"report latency batch must be an integer >= 1, got {self.batch!r}")
        if not (self.before_ms > 0 and self.after_ms > 0):
            raise ConfigError(
                f"report latency in {self.runtime}: times must be > 0 ms, got "
                f"{self.before_ms!r} and {self.after_ms!r}"
            )

    @property
    def name(self) -> str:
        """The row's name, e.g. ``"latency onnxruntime b1 (CPU time)"``."""
        clock = " (CPU time)" if self.clock == "cpu" else ""
        return f"latency {self.runtime} b{self.batch}{clock}"

    def row(self) -> Row:
        """The before/after row, with ``ratio = after / before``."""
        return Row(self.name, "ms", self.before_ms, self.after_ms,
                   self.after_ms / self.before_ms, self.after_ms - self.before_ms)  # fmt: skip


@dataclass(frozen=True)
class RunReport:
    """Everything a report of one pruning run shows.

    Attributes:
        title: the heading.
        command: the exact command line that ran.
        versions: package name -> version (see :func:`collect_versions`).
        metrics: before/after rows (params, MACs, size, latency, task metrics).
        layers: per-layer (or per-group) widths before and after.
        verification: the verification outcome, or ``None`` when not applicable (masks).
        warnings: things the user should know.
        plots: figures embedded in the report.
        latencies: dense and pruned latency measured in named runtimes; shown with the
            metrics (:meth:`metric_rows`).
    """

    title: str
    command: str
    versions: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[Row, ...] = ()
    layers: tuple[LayerRow, ...] = ()
    verification: Verification | None = None
    warnings: tuple[str, ...] = ()
    plots: tuple[Plot, ...] = ()
    latencies: tuple[RuntimeLatency, ...] = ()

    def metric_rows(self) -> tuple[Row, ...]:
        """The metric rows with one row per runtime latency, in place of the generic
        ``"latency"`` row when that one was not measured (else just after it)."""
        extra = [latency.row() for latency in self.latencies]
        rows: list[Row] = []
        for row in self.metrics:
            unmeasured = row.before is None and row.after is None
            if row.name == "latency" and extra:
                rows += extra if unmeasured else [row, *extra]
                extra = []
            else:
                rows.append(row)
        return (*rows, *extra)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect_versions(extra: Sequence[str] = OPTIONAL_PACKAGES) -> dict[str, str]:
    """Versions of prunekit, torch, Python and the platform, plus those of ``extra`` packages
    that are installed (read from package metadata; nothing is imported)."""
    versions = {
        "prunekit": _installed("prunekit") or "unknown",
        "torch": _installed("torch") or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in extra:
        found = _installed(name)
        if found:
            versions[name] = found
    return versions


def layer_rows_from_selection(
    selection: Mapping[str, Tensor], *, quantity: str = "units"
) -> tuple[LayerRow, ...]:
    """One row per group of a selection (group name -> keep flags): units before and kept."""
    return tuple(
        LayerRow(name, int(keep.numel()), int(keep.sum().item()), quantity)
        for name, keep in selection.items()
    )
