"""Layer input statistics over calibration data: re-exported from
:mod:`prunekit.estimators.stats`."""

from prunekit.estimators.stats import InputStats, record_inputs

__all__ = ["InputStats", "record_inputs"]
