"""The runtimes of :mod:`prunekit.measure.runtimes`, for export: a runtime or exporter that is
not installed raises a :class:`MissingExportRuntimeError`, which is both an
:class:`~prunekit.export.report.ExportError` and a
:class:`~prunekit.measure.runtimes.MissingRuntimeError` (a ``ConfigError``) naming the extra."""

from __future__ import annotations

from types import ModuleType

from prunekit.export.report import ExportError
from prunekit.measure import runtimes as _runtimes
from prunekit.measure.runtimes import (
    RUNTIMES,
    MissingRuntimeError,
    openvino_compiled,
    ort_session,
    runtime_name,
)

__all__ = [
    "RUNTIMES",
    "MissingExportRuntimeError",
    "openvino_compiled",
    "ort_session",
    "require",
    "runtime_name",
]


class MissingExportRuntimeError(ExportError, MissingRuntimeError):
    """An export needs a runtime or exporter that is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a :class:`MissingExportRuntimeError` saying how to install
    it."""
    try:
        return _runtimes.require(module, purpose)
    except MissingRuntimeError as err:
        raise MissingExportRuntimeError(str(err)) from None
