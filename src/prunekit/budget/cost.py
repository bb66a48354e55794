"""The cost (MACs, parameters or bytes on disk) of a structural selection, computed without surgery.

Channel pruning cuts slices of tensor dimensions, so each cost term scales with the kept
fraction of the dimensions it depends on:

* a parameter keeps ``prod_d kept(d) / size(d)`` of its entries (exact), and a parameter or
  buffer the same fraction of its bytes (exact but for the file's header);
* a Linear or convolution layer keeps the same fraction of its own MACs as of its weight's
  entries: every weight entry takes part in the same number of multiply-adds (see
  :mod:`prunekit.measure.macs`), so this is exact too. MACs outside such layers (attention score
  products, matmuls written in ``forward``) are held fixed, which is approximate for models
  whose heads shrink; :func:`~prunekit.budget.select_to_target` confirms by real surgery.

The dense counts are taken once; a candidate selection then costs one gather and one
scatter-add over the units of every group member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.budget.target import Metric
from prunekit.budget.units import UnitCuts, member_dim
from prunekit.core.groups import Group, Member, Selection
from prunekit.measure import count_macs, dense_size_bytes, layer_macs
from prunekit.measure.params import measured_layers

TensorDim = tuple[str, int]


@dataclass(frozen=True)
class CostModel:
    """``cost(selection) = fixed + sum_t dense_t * prod_{d of t} (1 - removed(d) / size(d))``.

    Attributes:
        dense: the dense model's cost (the sum of everything).
        fixed: the part no group touches.
        term_cost: dense cost of each term (a parameter, or a layer's own MACs).
        term_dims: per term, indices into the (tensor, dim) keys it scales with, padded with
            the index of an always-kept dummy key.
        key_size: size of each (tensor, dim) key.
        units: which key each unit of each group member cuts, and by how many positions.
    """

    dense: float
    fixed: float
    term_cost: Tensor
    term_dims: Tensor
    key_size: Tensor
    units: UnitCuts

    @property
    def group_names(self) -> tuple[str, ...]:
        return self.units.group_names

    def cost(self, selection: Selection) -> float:
        """The cost of the model with every unit ``selection`` drops removed."""
        cut = self.units.cut(selection, self.key_size.numel())
        kept = torch.cat([1.0 - cut / self.key_size, torch.ones(1, dtype=torch.float64)])
        return self.fixed + float((self.term_cost * kept[self.term_dims].prod(dim=1)).sum())

    def ratio(self, selection: Selection) -> float:
        return self.cost(selection) / self.dense if self.dense else 1.0


def _first_names(model: nn.Module) -> dict[int, str]:
    """Tensor identity -> the name surgery uses for it (the first, for tied tensors)."""
    names: dict[int, str] = {}
    for name, t in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        names.setdefault(id(t), name)
    return names


def _dense_terms(
    model: nn.Module, example_inputs: Any, metric: Metric
) -> tuple[float, dict[str, float]]:
    """The dense total and, per tensor name, the cost that scales with that tensor's shape."""
    names = _first_names(model)
    if metric == "params":
        params = dict(model.named_parameters())  # each tied tensor once
        terms = {names[id(p)]: float(p.numel()) for p in params.values()}
        return float(sum(terms.values())), terms
    if metric == "size":
        tensors = [
            *model.named_parameters(remove_duplicate=False),
            *model.named_buffers(remove_duplicate=False),
        ]
        sizes = {names[id(t)]: float(t.numel() * t.element_size()) for _, t in tensors}
        return float(dense_size_bytes(model)), sizes
    count = count_macs(model, example_inputs)
    own = layer_macs(model, count)
    terms = {}
    for name, module, rule in measured_layers(model):
        weight = getattr(module, rule.weight)
        key = names[id(weight)]
        terms[key] = terms.get(key, 0.0) + float(own.get(name, 0))
    return float(count.total), terms


def build_cost_model(
    model: nn.Module, example_inputs: Any, groups: Sequence[Group], metric: Metric
) -> CostModel:
    """Count the dense model once and index how each group's units scale each cost term."""
    dense, terms = _dense_terms(model, example_inputs, metric)
    shapes = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
    keys: dict[TensorDim, int] = {}

    def key_of(member: Member) -> int | None:
        if member.tensor not in terms:
            return None
        return keys.setdefault((member.tensor, member_dim(member)), len(keys))

    units = UnitCuts.build(groups, key_of, f"a {metric} target")
    dims_of: dict[str, list[int]] = {}
    for (tensor, _), k in keys.items():
        dims_of.setdefault(tensor, []).append(k)
    costed = [t for t in terms if t in dims_of]
    width = max((len(dims_of[t]) for t in costed), default=1)
    dummy = len(keys)
    term_dims = torch.full((len(costed), width), dummy, dtype=torch.long)
    for row, tensor in enumerate(costed):
        term_dims[row, : len(dims_of[tensor])] = torch.tensor(dims_of[tensor])
    key_size = torch.tensor([float(shapes[t][d]) for (t, d) in keys], dtype=torch.float64)

    return CostModel(
        dense=dense,
        fixed=dense - sum(terms[t] for t in costed),
        term_cost=torch.tensor([terms[t] for t in costed], dtype=torch.float64),
        term_dims=term_dims,
        key_size=key_size,
        units=units,
    )
