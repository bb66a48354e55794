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
from prunekit.core.groups import Group, Selection
from prunekit.core.views import AxisView, IndexView
from prunekit.errors import ConfigError
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
        unit_key / unit_index / unit_count: one entry per (member, unit): the key the unit
            cuts, the unit's index in the flat concatenation of the groups' units, and how many
            positions of that dimension it covers.
    """

    dense: float
    fixed: float
    term_cost: Tensor
    term_dims: Tensor
    key_size: Tensor
    unit_key: Tensor
    unit_index: Tensor
    unit_count: Tensor
    group_names: tuple[str, ...]

    def cost(self, selection: Selection) -> float:
        """The cost of the model with every unit ``selection`` drops removed."""
        removed = torch.cat([~selection[n].to(torch.bool).cpu() for n in self.group_names])
        cut = torch.zeros(self.key_size.numel(), dtype=torch.float64)
        cut.index_add_(0, self.unit_key, self.unit_count * removed[self.unit_index])
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


def unit_positions(group: Group, member_index: int) -> Tensor:
    view = group.members[member_index].view
    if isinstance(view, AxisView):
        return torch.full((view.n_units,), float(view.repeat), dtype=torch.float64)
    if isinstance(view, IndexView):
        return torch.tensor([float(len(ix)) for ix in view.index], dtype=torch.float64)
    raise ConfigError(
        f"a MACs or params target needs structural groups (channels, neurons, heads); group "
        f"{group.name!r} has a {type(view).__name__} (element, block and N:M granularities "
        "keep every layer's shape)"
    )


def build_cost_model(
    model: nn.Module, example_inputs: Any, groups: Sequence[Group], metric: Metric
) -> CostModel:
    """Count the dense model once and index how each group's units scale each cost term."""
    dense, terms = _dense_terms(model, example_inputs, metric)
    shapes = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
    keys: dict[TensorDim, int] = {}
    unit_key, unit_index, unit_count = [], [], []
    offset = 0
    for group in groups:
        for i, member in enumerate(group.members):
            positions = unit_positions(group, i)
            if member.tensor not in terms:
                continue
            dim = int(getattr(member.view, "dim", 0))
            k = keys.setdefault((member.tensor, dim), len(keys))
            unit_key.append(torch.full((group.n_units,), k, dtype=torch.long))
            unit_index.append(torch.arange(offset, offset + group.n_units))
            unit_count.append(positions)
        offset += group.n_units
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

    def cat(parts: list[Tensor], dtype: torch.dtype) -> Tensor:
        return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)

    return CostModel(
        dense=dense,
        fixed=dense - sum(terms[t] for t in costed),
        term_cost=torch.tensor([terms[t] for t in costed], dtype=torch.float64),
        term_dims=term_dims,
        key_size=key_size,
        unit_key=cat(unit_key, torch.long),
        unit_index=cat(unit_index, torch.long),
        unit_count=cat(unit_count, torch.float64),
        group_names=tuple(g.name for g in groups),
    )
