"""Trace and score a model once for a search, exactly as :func:`prunekit.prune` would.

Every trial of a search prunes the same model with the same groups and scores and only changes
the per-layer sparsities, so tracing (:func:`~prunekit.graph.build_structural_groups`) and
scoring run once here. They run the way structural pruning runs them (attention converted to
prunable heads, the same exclusions and inclusions, the same estimator on the same data), so a
chosen allocation replayed by ``prunekit.prune`` selects the same units.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.budget import RuntimeTimer, Target
from prunekit.config import PruneConfig
from prunekit.core.groups import Group, Scores
from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError
from prunekit.estimators import ScoringData
from prunekit.graph import build_structural_groups
from prunekit.measure.inputs import call_model
from prunekit.search.budget import Budget, parse_budget
from prunekit.search.costs import build_costs
from prunekit.search.space import SearchSpace
from prunekit.search.stages import (
    RESOLUTION,
    StageRule,
    assign_stages,
    check_space,
    check_stages,
)
from prunekit.surgery.convert import replace_multihead_attention


@dataclass
class Prepared:
    """The working model (the user's tensors, attention converted to heads), its example
    inputs, the searched groups and their scores."""

    model: nn.Module
    example: Any
    groups: list[Group]
    scores: Scores
    config: PruneConfig


def prepare(
    model: nn.Module, example: Any, config: PruneConfig, data: ScoringData | None
) -> Prepared:
    """Groups and scores of ``model`` under ``config`` (granularity, estimator, include,
    exclude, heads)."""
    working = model
    if config.heads:
        working, _ = replace_multihead_attention(model, share_tensors=True)
    traced = build_structural_groups(working, example, ignore=tuple(config.exclude))
    pool = [g for g in traced if any(fnmatch.fnmatchcase(g.layer, p) for p in config.include)]
    if not pool:
        raise ConfigError(
            f"search: no prunable group found (include={list(config.include)}, "
            f"exclude={list(config.exclude)})"
        )
    scores = config.build_estimator().score(working, pool, data)
    return Prepared(working, example, pool, scores, config)


def feature_sizes(prepared: Prepared) -> dict[str, tuple[int, ...]]:
    """Spatial size of each searched layer's output feature maps (``(H, W)`` of an ``[N, C, H,
    W]`` output whose channels are the layer's units), from one forward pass on the example
    inputs; a layer whose units are not the channels of a feature map (a Linear layer, or a
    group with no output position) is left out."""
    where = {g.output[0]: g.output[1] for g in prepared.groups if g.output is not None}
    sizes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in prepared.model.named_modules():
        if name not in where:
            continue

        def hook(_: nn.Module, __: Any, out: Any, name: str = name) -> None:
            dim = where[name]
            if name in sizes or not isinstance(out, torch.Tensor) or out.dim() < 3:
                return
            if dim % out.dim() == 1:  # channels first: the rest are spatial
                sizes[name] = tuple(int(n) for n in out.shape[2:])

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(prepared.model), torch.no_grad():
            call_model(prepared.model, prepared.example, purpose="measuring feature-map sizes")
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def build_space(
    prepared: Prepared,
    target: Budget | Target | Mapping[str, float | str] | str,
    tolerance: float,
    *,
    space: str = "group",
    stages: StageRule = None,
    timer: RuntimeTimer | None = None,
) -> SearchSpace:
    """The search space of ``prepared``: MACs and params cost models (and the budget's latency
    table, measured once with ``timer``, or size model), one parameter per layer or, with
    ``space="stage"``, per stage of ``stages`` (:mod:`prunekit.search.stages`)."""
    budget = parse_budget(target)
    kind = check_space(space)
    rule = check_stages(stages)
    costs = build_costs(prepared.model, prepared.example, prepared.groups, budget, timer)
    mapping = None
    if kind == "stage":
        sizes = feature_sizes(prepared) if rule == RESOLUTION else None
        mapping = assign_stages([g.layer for g in prepared.groups], rule, sizes=sizes)
    return SearchSpace(
        prepared.groups, prepared.scores, prepared.config.selection(), costs, budget,
        tolerance=tolerance, stages=mapping,
    )  # fmt: skip


def fingerprint(model: nn.Module, extra: Sequence[str] = ()) -> str:
    """A hash of the model's tensor names, shapes, dtypes and values (and ``extra`` strings):
    a study recorded for one model is refused for another."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()
