"""Tied tensors: one tensor used by two layers (``fc2.weight = fc1.weight``, tied embeddings)
is one set of units, so the groups of those layers become one group with one decision.

Without this, each layer's group would be scored and selected on its own and the shared tensor
would get two different masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.core.groups import Group, Member
from prunekit.errors import ConfigError


def storage(model: nn.Module, name: str) -> Tensor | None:
    """The parameter or buffer object behind ``name`` (a masked tensor's original)."""
    module_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        return None
    if parametrize.is_parametrized(module, attr):
        container = getattr(module, "parametrizations")  # noqa: B009 (added by torch)
        original = getattr(container[attr], "original", None)
        return original if isinstance(original, Tensor) else None
    found = module._parameters.get(attr)
    return found if found is not None else module._buffers.get(attr)


def merge_tied(model: nn.Module, groups: Sequence[Group]) -> list[Group]:
    """``groups`` with every group that shares a tensor with an earlier one merged into it.

    The merged group keeps the earlier group's name, layer and first member; members naming a
    tensor the group already holds are dropped, the others (e.g. the second layer's own bias)
    are added. Layers that split a shared tensor into units differently cannot share a
    decision: that is a :class:`~prunekit.errors.ConfigError` naming both tensors.
    """
    merged: list[Group] = []
    owner: dict[int, tuple[int, Member]] = {}
    for group in groups:
        host = _host(model, group, owner)
        if host is None:
            merged.append(group)
            _own(model, len(merged) - 1, group.members, owner)
            continue
        held = {id(storage(model, m.tensor)) for m in merged[host].members}
        extra = tuple(m for m in group.members if id(storage(model, m.tensor)) not in held)
        merged[host] = replace(merged[host], members=merged[host].members + extra)
        _own(model, host, extra, owner)
    return merged


def _host(model: nn.Module, group: Group, owner: dict[int, tuple[int, Member]]) -> int | None:
    """The index of the earlier group sharing a tensor with ``group``, if any."""
    host: int | None = None
    for member in group.members:
        key = id(storage(model, member.tensor))
        if key not in owner:
            continue
        index, first = owner[key]
        if first.view != member.view:
            raise ConfigError(
                f"{first.tensor!r} and {member.tensor!r} are one tensor (tied weights) but their "
                f"layers split it into units differently, so they cannot share one decision; "
                f"untie them or exclude one layer (e.g. exclude=[{group.layer!r}])"
            )
        if host is not None and host != index:
            raise ConfigError(
                f"layer {group.layer!r} shares tensors with two different groups "
                f"({_merged_names(owner, host, index)}); untie them or exclude it "
                f"(exclude=[{group.layer!r}])"
            )
        host = index
    return host


def _merged_names(owner: dict[int, tuple[int, Member]], a: int, b: int) -> str:
    first = {index: member.tensor for index, member in owner.values()}
    return f"{first[a]!r} and {first[b]!r}"


def _own(
    model: nn.Module, index: int, members: Sequence[Member], owner: dict[int, tuple[int, Member]]
) -> None:
    for member in members:
        t = storage(model, member.tensor)
        if t is not None:
            owner.setdefault(id(t), (index, member))
