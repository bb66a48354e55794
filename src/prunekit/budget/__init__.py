"""Budgets the way users state them: keep a fraction of the dense model's MACs or parameters.

:func:`parse_target` reads ``{"macs": 0.5}`` or ``"params=0.3"``; :func:`select_to_target`
finds the structural selection whose pruned model meets it (a :class:`TargetSelection`, which
also names the groups it had to keep whole).
"""

from prunekit.budget.cost import CostModel, build_cost_model
from prunekit.budget.latency import (
    LatencyModel,
    LatencyTable,
    RuntimeTimer,
    fastest_step,
    measure_latency_table,
)
from prunekit.budget.search import TargetSelection, select_to_target
from prunekit.budget.target import LATENCY_RUNTIMES, METRICS, Metric, Target, parse_target

__all__ = [
    "LATENCY_RUNTIMES",
    "METRICS",
    "CostModel",
    "LatencyModel",
    "LatencyTable",
    "Metric",
    "RuntimeTimer",
    "Target",
    "TargetSelection",
    "build_cost_model",
    "fastest_step",
    "measure_latency_table",
    "parse_target",
    "select_to_target",
]
