"""Groups: the coupled tensor slices that are scored and removed together.

A :class:`Group` owns ``n_units`` units. Each :class:`Member` is one tensor (a parameter or buffer,
named by its fully qualified name, e.g. ``"features.0.weight"``) together with the
:class:`~prunekit.core.views.UnitView` that says where each unit lies in it. For unstructured,
block and N:M granularities a group has one member (a weight); for a channel of a layer it has the
weight's rows and the bias entries; the dependency graph of structural pruning builds groups with
many members (the next layer's input slices, normalisation entries, residual partners).

Scores, selections and masks are plain dictionaries keyed by group or tensor name, so every
pipeline stage can be used, tested and saved alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.core.views import Reduction, UnitView, view_from_dict

Scores = dict[str, Tensor]
"""Group name -> float tensor with one importance per unit (higher means keep)."""

Selection = dict[str, Tensor]
"""Group name -> bool tensor with one entry per unit (True means keep)."""

Masks = dict[str, Tensor]
"""Tensor name -> 0/1 tensor of the tensor's shape (1 means keep)."""


@dataclass(frozen=True)
class Member:
    """One tensor of a group and where the group's units lie in it.

    ``scored`` is False for tensors that are removed with the group but carry no importance
    evidence of their own (e.g. BatchNorm running statistics).
    """

    tensor: str
    view: UnitView
    scored: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "view": self.view.to_dict(), "scored": self.scored}


@dataclass(frozen=True)
class Group:
    """Units that are kept or removed together, and the tensor slices that make them up.

    Attributes:
        name: unique name of the group (by default the layer's name, plus a suffix if needed).
        layer: fully qualified name of the module whose units these are; name patterns for
            exclusions and per-layer overrides match against it.
        members: the tensors and views; the first member is the group's *root*.
        pattern: ``(n, m)`` for N:M groups: exactly ``n`` of every ``m`` consecutive units are kept.
        output: ``(module name, dim)`` where the units appear in a module's output activations,
            for activation-based estimators; ``None`` when units are not output units.
    """

    name: str
    layer: str
    members: tuple[Member, ...]
    pattern: tuple[int, int] | None = None
    output: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"group {self.name!r} has no members")
        sizes = {m.tensor: m.view.n_units for m in self.members}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"group {self.name!r}: members disagree on the number of units {sizes}"
            )

    @property
    def n_units(self) -> int:
        return self.members[0].view.n_units

    @property
    def root(self) -> Member:
        return self.members[0]

    def tensor_names(self) -> list[str]:
        return [m.tensor for m in self.members]

    def reduce(self, values: Mapping[str, Tensor], how: Reduction = "sum") -> Tensor:
        """Reduce per-element ``values`` (tensor name -> tensor) over every scored member.

        ``sum`` adds over all elements of a unit in all members; ``mean`` divides that by the
        number of elements; ``max`` takes the largest element. Members missing from ``values``
        are skipped (an estimator may only have evidence for some tensors, e.g. weights).
        """
        scored = [m for m in self.members if m.scored and m.tensor in values]
        if not scored:
            raise KeyError(f"group {self.name!r}: no values for any of {self.tensor_names()}")
        if how == "max":
            per_member = [m.view.reduce(values[m.tensor].float(), "max") for m in scored]
            return torch.stack(per_member).amax(dim=0)
        total = sum(m.view.reduce(values[m.tensor].float(), "sum") for m in scored)
        assert isinstance(total, Tensor)
        if how == "mean":
            counts = sum(m.view.counts() for m in scored)
            assert isinstance(counts, Tensor)
            return total / counts.to(total)
        return total

    def expand(self, unit_values: Tensor) -> Masks:
        """Broadcast one value per unit (e.g. a keep mask) to every member tensor."""
        if unit_values.shape != (self.n_units,):
            raise ValueError(
                f"group {self.name!r} has {self.n_units} units, got values of shape "
                f"{tuple(unit_values.shape)}"
            )
        return {m.tensor: m.view.expand(unit_values) for m in self.members}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer": self.layer,
            "members": [m.to_dict() for m in self.members],
            "pattern": list(self.pattern) if self.pattern else None,
            "output": list(self.output) if self.output else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Group:
        members = tuple(
            Member(m["tensor"], view_from_dict(m["view"]), m.get("scored", True))
            for m in data["members"]
        )
        pattern = data.get("pattern")
        output = data.get("output")
        return cls(
            data["name"],
            data["layer"],
            members,
            (int(pattern[0]), int(pattern[1])) if pattern else None,
            (str(output[0]), int(output[1])) if output else None,
        )


def get_tensor(model: nn.Module, name: str) -> Tensor:
    """The tensor ``name`` (e.g. ``"layer1.0.conv1.weight"``) as the module uses it.

    For a masked (parametrised) parameter this is the effective, masked value.
    """
    module_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError as err:
        raise KeyError(f"model has no module {module_name!r} (for tensor {name!r})") from err
    value = getattr(module, attr, None)
    if not isinstance(value, Tensor):
        raise KeyError(f"module {module_name!r} has no tensor {attr!r}")
    return value


def group_tensors(model: nn.Module, groups: Sequence[Group]) -> dict[str, Tensor]:
    """Every tensor that any group touches, by name, detached from autograd."""
    names = dict.fromkeys(t for g in groups for t in g.tensor_names())
    return {n: get_tensor(model, n).detach() for n in names}


def selection_to_masks(groups: Sequence[Group], selection: Selection) -> Masks:
    """Turn per-unit keep decisions into per-tensor 0/1 masks.

    A tensor touched by several groups (e.g. a weight whose rows belong to one group and whose
    columns belong to another) keeps an element only if every group keeps it.
    """
    masks: Masks = {}
    for group in groups:
        keep = selection[group.name].to(torch.float32)
        for tensor, mask in group.expand(keep).items():
            masks[tensor] = masks[tensor] * mask if tensor in masks else mask
    return masks
