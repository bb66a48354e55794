"""The cost models a search prices candidates with, built once per search.

``macs`` and ``params`` come from :func:`prunekit.budget.build_cost_model` (analytic, exact for
convolutions and Linear layers). ``latency`` is a :class:`~prunekit.budget.LatencyModel` over a
per-layer table measured once in the budget's runtime (NetAdapt, Yang et al. 2018; AMC, He et
al. 2018): every trial, and the projection of every candidate onto the budget, read that one
table. ``size`` is analytic too (:func:`~prunekit.budget.build_cost_model` with ``"size"``): every
parameter and buffer keeps ``prod_d kept(d) / size(d)`` of its bytes, the rest of the
safetensors file (its header) is held fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import nn

from prunekit.budget import (
    LatencyModel,
    RuntimeTimer,
    build_cost_model,
    measure_latency_table,
)
from prunekit.core.groups import Group, Selection
from prunekit.search.budget import Budget
from prunekit.surgery.apply import apply_surgery


class Costs(Protocol):
    """Prices a selection as the fraction of the dense model's cost it keeps."""

    def ratio(self, selection: Selection) -> float: ...


def timed_ratio(
    model: nn.Module,
    example: Any,
    groups: Sequence[Group],
    selection: Selection,
    timer: RuntimeTimer,
) -> float:
    """The real latency of ``model`` pruned by ``selection`` over the dense model's, timed
    interleaved in ``timer``'s runtime (twice its repeats, plus one): the check of what the
    table predicted."""
    pruned, _ = apply_surgery(model, groups, selection)
    times = timer.with_repeats(2 * timer.repeats + 1).time(
        {"dense": model, "pruned": pruned}, example
    )
    return times["pruned"] / times["dense"]


def build_costs(
    model: nn.Module,
    example: Any,
    groups: Sequence[Group],
    budget: Budget,
    timer: RuntimeTimer | None = None,
) -> dict[str, Costs]:
    """MACs and params models, plus the budget's own (latency or size) when it is another."""
    costs: dict[str, Costs] = {
        metric: build_cost_model(model, example, groups, metric) for metric in ("macs", "params")
    }
    if budget.metric == "size":
        costs["size"] = build_cost_model(model, example, groups, "size")
    elif budget.metric == "latency":
        timer = timer or RuntimeTimer(budget.runtime or "onnxruntime")
        pruned = sorted({m.tensor for g in groups for m in g.members})
        table = measure_latency_table(model, example, timer, only=pruned)
        costs["latency"] = LatencyModel(table, groups, model)
    return costs
