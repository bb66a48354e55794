"""The plan: a JSON-serialisable record of what surgery removed.

For every parameter and buffer it touched, the plan names the dimensions and the removed indices
(and the shapes before and after); for every module, the width attributes it changed; for every
group, the removed units; for every module converted before tracing (``convert``: an
``nn.MultiheadAttention`` made head-prunable, see :mod:`prunekit.surgery.convert`), its new
class; for every whole block that layer granularity removed (``blocks``, see
:mod:`prunekit.surgery.blocks`), what replaced it. Blocks are replaced first; tensor names refer
to the model after that. A plan with blocks is written as version 2 (a reader that knows only
version 1 refuses it instead of loading wrong shapes); any other plan as version 1.
``rebuild(original, plan)`` re-applies it to a fresh copy of the original architecture, which is
how a pruned model is loaded without pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prunekit.core.groups import Group, Selection
from prunekit.core.views import AxisView, IndexView, UnitView
from prunekit.errors import ConfigError, SaveFileError, SelectionError

PLAN_FORMAT = "prunekit.plan"
PLAN_VERSION = 2
"""The newest plan version this code writes and reads (a plan without blocks is written as 1)."""
SUPPORTED_PLAN_VERSIONS: tuple[int, ...] = (1, 2)


@dataclass
class TensorCut:
    """The indices removed from one tensor, per dimension."""

    tensor: str
    shape_before: tuple[int, ...]
    removed: dict[int, list[int]]
    aliases: tuple[str, ...] = ()

    @property
    def shape_after(self) -> tuple[int, ...]:
        return tuple(n - len(self.removed.get(d, ())) for d, n in enumerate(self.shape_before))

    def kept(self, dim: int) -> list[int]:
        return self.kept_index(dim).tolist()

    def kept_index(self, dim: int) -> Tensor:
        """The kept positions along ``dim``, ascending, as a long tensor."""
        keep = torch.ones(self.shape_before[dim], dtype=torch.bool)
        keep[torch.as_tensor(self.removed.get(dim, ()), dtype=torch.long)] = False
        return keep.nonzero().flatten()

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape_before": list(self.shape_before),
            "shape_after": list(self.shape_after),
            "dims": [{"dim": d, "removed": idx} for d, idx in sorted(self.removed.items())],
            "aliases": list(self.aliases),
        }


@dataclass
class Plan:
    """What surgery removed; see the module docstring."""

    tensors: dict[str, TensorCut]
    groups: dict[str, list[int]] = field(default_factory=dict)
    modules: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    convert: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION if self.blocks else 1,
            "tensors": {name: cut.to_dict() for name, cut in self.tensors.items()},
            "modules": self.modules,
            "groups": {name: {"removed": idx} for name, idx in self.groups.items()},
        }
        if self.convert:  # plans without conversions read as before
            data["convert"] = dict(self.convert)
        if self.blocks:
            data["blocks"] = {name: dict(entry) for name, entry in self.blocks.items()}
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise SaveFileError(f"not a prunekit plan (format {data.get('format')!r})")
        if data.get("version") not in SUPPORTED_PLAN_VERSIONS:
            raise SaveFileError(
                f"plan version {data.get('version')!r} is not supported (expected one of "
                f"{SUPPORTED_PLAN_VERSIONS})"
            )
        tensors = {
            name: TensorCut(
                name,
                tuple(t["shape_before"]),
                {int(e["dim"]): [int(i) for i in e["removed"]] for e in t["dims"]},
                tuple(t.get("aliases", ())),
            )
            for name, t in data["tensors"].items()
        }
        groups = {name: list(g["removed"]) for name, g in data.get("groups", {}).items()}
        modules = {k: dict(v) for k, v in data.get("modules", {}).items()}
        convert = {str(k): str(v) for k, v in data.get("convert", {}).items()}
        blocks = {str(k): dict(v) for k, v in data.get("blocks", {}).items()}
        return cls(tensors, groups, modules, convert, blocks)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))


def check_selection(groups: Sequence[Group], selection: Selection) -> None:
    """Every group has a keep vector of the right length that keeps at least one unit."""
    for group in groups:
        if group.name not in selection:
            raise ConfigError(f"the selection has no entry for group {group.name!r}")
        keep = selection[group.name]
        if tuple(keep.shape) != (group.n_units,):
            raise ConfigError(
                f"selection of group {group.name!r} has shape {tuple(keep.shape)}, expected "
                f"({group.n_units},)"
            )
        if not bool(keep.any()):
            raise SelectionError(
                f"the selection removes every unit of group {group.name!r}; a layer cannot "
                "shrink to width 0 (use min_keep >= 1)"
            )


def removed_positions(view: UnitView, keep: Tensor) -> list[int]:
    """Positions along the view's dimension that belong to a removed unit."""
    if isinstance(view, AxisView):
        gone = (~keep).nonzero().flatten()
        steps = torch.arange(view.repeat)
        return (view.offset + gone[:, None] * view.repeat + steps).flatten().tolist()
    if isinstance(view, IndexView):
        return sorted(p for u in (~keep).nonzero().flatten().tolist() for p in view.index[u])
    raise ConfigError(
        f"surgery removes whole slices; a {type(view).__name__} is not structural (use "
        "masks for element, N:M and block granularities)"
    )


def make_plan(
    groups: Sequence[Group],
    selection: Selection,
    shapes: Mapping[str, tuple[int, ...]],
    aliases: Mapping[str, tuple[str, ...]] | None = None,
) -> Plan:
    """The plan of removing every unit that ``selection`` does not keep."""
    check_selection(groups, selection)
    removed: dict[str, dict[int, set[int]]] = {}
    group_cuts: dict[str, list[int]] = {}
    for group in groups:
        keep = selection[group.name].to(torch.bool).cpu()
        if bool(keep.all()):
            continue
        group_cuts[group.name] = (~keep).nonzero().flatten().tolist()
        for member in group.members:
            dims = removed.setdefault(member.tensor, {})
            dim = getattr(member.view, "dim", 0)
            dims.setdefault(dim, set()).update(removed_positions(member.view, keep))
    tensors = {
        name: TensorCut(
            name,
            tuple(shapes[name]),
            {d: sorted(p) for d, p in dims.items() if p},
            tuple((aliases or {}).get(name, ())),
        )
        for name, dims in removed.items()
    }
    return Plan({n: c for n, c in tensors.items() if c.removed}, group_cuts)
