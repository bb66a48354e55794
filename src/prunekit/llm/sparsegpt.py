"""SparseGPT's OBS reconstruction: re-exported from :mod:`prunekit.estimators.sparsegpt`."""

from prunekit.estimators.sparsegpt import inverse_hessian_factor, sparsegpt_prune

__all__ = ["inverse_hessian_factor", "sparsegpt_prune"]
