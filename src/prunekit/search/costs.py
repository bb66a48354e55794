"""The cost models a search prices candidates with, built once per search.

``macs`` and ``params`` come from :func:`prunekit.budget.build_cost_model` (analytic, exact for
convolutions and Linear layers). ``latency`` is a :class:`~prunekit.budget.LatencyModel` over a
per-layer table measured once in the budget's runtime (NetAdapt, Yang et al. 2018; AMC, He et
al. 2018): every trial, and the projection of every candidate onto the budget, read that one
table. ``size`` is analytic: every parameter and buffer keeps ``prod_d kept(d) / size(d)`` of
its bytes, the rest of the safetensors file (its header) is held fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from prunekit.budget import (
    CostModel,
    LatencyModel,
    RuntimeTimer,
    build_cost_model,
    measure_latency_table,
)
from prunekit.budget.cost import unit_positions
from prunekit.core.groups import Group, Selection
from prunekit.measure import dense_size_bytes
from prunekit.search.budget import Budget
from prunekit.surgery.apply import apply_surgery


class Costs(Protocol):
    """Prices a selection as the fraction of the dense model's cost it keeps."""

    def ratio(self, selection: Selection) -> float: ...


def size_cost_model(model: nn.Module, groups: Sequence[Group]) -> CostModel:
    """Bytes of ``model``'s safetensors file as a :class:`~prunekit.budget.CostModel` over
    ``groups``: one term per distinct tensor (its bytes), scaled by the kept fraction of each
    dimension the groups cut."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            tensors[name] = t
    keys: dict[tuple[str, int], int] = {}
    unit_key, unit_index, unit_count = [], [], []
    offset = 0
    for group in groups:
        for i, member in enumerate(group.members):
            if member.tensor in tensors:
                dim = int(getattr(member.view, "dim", 0))
                k = keys.setdefault((member.tensor, dim), len(keys))
                unit_key.append(torch.full((group.n_units,), k, dtype=torch.long))
                unit_index.append(torch.arange(offset, offset + group.n_units))
                unit_count.append(unit_positions(group, i))
        offset += group.n_units
    dims_of: dict[str, list[int]] = {}
    for (tensor, _), k in keys.items():
        dims_of.setdefault(tensor, []).append(k)
    costed = list(dims_of)
    width = max((len(v) for v in dims_of.values()), default=1)
    term_dims = torch.full((len(costed), width), len(keys), dtype=torch.long)
    for row, tensor in enumerate(costed):
        term_dims[row, : len(dims_of[tensor])] = torch.tensor(dims_of[tensor])
    nbytes = {n: float(t.numel() * t.element_size()) for n, t in tensors.items()}
    dense = float(dense_size_bytes(model))
    return CostModel(
        dense=dense,
        fixed=dense - sum(nbytes[t] for t in costed),
        term_cost=torch.tensor([nbytes[t] for t in costed], dtype=torch.float64),
        term_dims=term_dims,
        key_size=torch.tensor([float(tensors[t].shape[d]) for (t, d) in keys], dtype=torch.float64),
        unit_key=torch.cat(unit_key) if unit_key else torch.zeros(0, dtype=torch.long),
        unit_index=torch.cat(unit_index) if unit_index else torch.zeros(0, dtype=torch.long),
        unit_count=torch.cat(unit_count) if unit_count else torch.zeros(0, dtype=torch.float64),
        group_names=tuple(g.name for g in groups),
    )


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
        costs["size"] = size_cost_model(model, groups)
    elif budget.metric == "latency":
        timer = timer or RuntimeTimer(budget.runtime or "onnxruntime")
        pruned = sorted({m.tensor for g in groups for m in g.members})
        table = measure_latency_table(model, example, timer, only=pruned)
        costs["latency"] = LatencyModel(table, groups, model)
    return costs
