"""Pruning in one call, per kind of unit: :func:`prune_structured` (channels and heads, removed
physically and verified) and :func:`prune_layers` (whole residual blocks). Each composes the
stages (trace, score, select, surgery, verify, recalibrate, measure) into a
:class:`~prunekit.result.PruneResult`; :func:`prunekit.prune` dispatches to them.
"""

from prunekit.pruning.layers import prune_layers
from prunekit.pruning.structural import measure_both, prune_structured, recalibrate_after_surgery

__all__ = ["measure_both", "prune_layers", "prune_structured", "recalibrate_after_surgery"]
