"""Which width each unit of a structural selection cuts, indexed once for fast cost models.

Both analytic budgets (:class:`~prunekit.budget.cost.CostModel` for MACs, parameters and bytes,
:class:`~prunekit.budget.latency_table.LatencyModel` for measured latency) price a selection by
the widths it leaves: for every *slot* (a tensor dimension the model tracks) the number of
positions the removed units cut from it. :class:`UnitCuts` indexes, once, the slot each unit of
each group member cuts and how many positions it covers, so that a candidate selection then
costs one gather and one scatter-add.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.core.groups import Group, Member, Selection
from prunekit.core.views import AxisView, IndexView
from prunekit.errors import ConfigError


def unit_positions(group: Group, member_index: int, need: str) -> Tensor:
    """Positions of its dimension each unit of one member covers (float64, one per unit).
    ``need`` names the budget for the error a non-structural view raises."""
    view = group.members[member_index].view
    if isinstance(view, AxisView):
        return torch.full((view.n_units,), float(view.repeat), dtype=torch.float64)
    if isinstance(view, IndexView):
        return torch.tensor([float(len(ix)) for ix in view.index], dtype=torch.float64)
    raise ConfigError(
        f"{need} needs structural groups (channels, neurons, heads); group {group.name!r} has a "
        f"{type(view).__name__} (element, block and N:M granularities keep every layer's shape)"
    )


def member_dim(member: Member) -> int:
    """The dimension of its tensor a member's units are slices of."""
    return int(getattr(member.view, "dim", 0))


@dataclass(frozen=True)
class UnitCuts:
    """One entry per (member, unit) of the groups a model tracks: ``index`` is the unit's place
    in the flat concatenation of the groups' units (in ``group_names`` order), ``slot`` the
    slot it cuts, ``count`` how many positions of that slot it covers; ``slots`` is the number
    of slots."""

    group_names: tuple[str, ...]
    index: Tensor
    slot: Tensor
    count: Tensor
    slots: int

    @staticmethod
    def build(
        groups: Sequence[Group], slot_of: Callable[[Member], int | None], need: str
    ) -> UnitCuts:
        """Index every member of ``groups`` that ``slot_of`` maps to a slot (``None``: the
        member's tensor is not tracked); ``slots`` is one more than the largest slot given.
        Every member must have a structural view (``need`` names the budget in the error)."""
        index, slot, count = [], [], []
        offset = top = 0
        for group in groups:
            for i, member in enumerate(group.members):
                positions = unit_positions(group, i, need)
                k = slot_of(member)
                if k is None:
                    continue
                index.append(torch.arange(offset, offset + group.n_units))
                slot.append(torch.full((group.n_units,), k, dtype=torch.long))
                count.append(positions)
                top = max(top, k + 1)
            offset += group.n_units
        return UnitCuts(
            group_names=tuple(g.name for g in groups),
            index=torch.cat(index) if index else torch.zeros(0, dtype=torch.long),
            slot=torch.cat(slot) if slot else torch.zeros(0, dtype=torch.long),
            count=torch.cat(count) if count else torch.zeros(0, dtype=torch.float64),
            slots=top,
        )

    def cut(self, selection: Selection, slots: int | None = None) -> Tensor:
        """Positions ``selection`` removes from each slot (float64, ``slots`` long, by default
        :attr:`slots`)."""
        removed = torch.cat([~selection[n].to(torch.bool).cpu() for n in self.group_names])
        cut = torch.zeros(self.slots if slots is None else slots, dtype=torch.float64)
        cut.index_add_(0, self.slot, self.count * removed[self.index])
        return cut
