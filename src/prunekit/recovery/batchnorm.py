"""BatchNorm statistics recalibration, re-exported from :mod:`prunekit.norms` (which surgery
uses too, and so lies below it)."""

from prunekit.norms import batchnorm_layers, recalibrate_batchnorm

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]
