"""What a structural rule sees of the trace, and small helpers shared by the rule families.

A rule is ``rule(ctx, args, kwargs, out)``: it reads the slots of the operands of one ATen call from
``ctx``, couples atoms that must be removed together (``ctx.graph``) and labels the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from prunekit.graph.atoms import AtomGraph, Slots
from prunekit.graph.couple import Item


class RuleContext(Protocol):
    """What a rule sees of the trace."""

    graph: AtomGraph

    def slots(self, t: Any) -> Slots:
        """The slots of ``t`` (empty for unlabelled tensors and non-tensors)."""

    def set_slots(self, t: Any, slots: Slots) -> None:
        """Label the output tensor ``t``."""

    def modules(self) -> Sequence[nn.Module]:
        """The modules being run, outermost first."""

    def where(self) -> str:
        """The module path being run, for error messages."""

    def note(self, why: str, op: str | None = None) -> None:
        """Record that units were kept whole here and why (with the op, default the ATen op
        being run, and the module path), for :attr:`StructuralGroups.kept`."""

    def is_clean(self, t: Any) -> bool:
        """True if ``t`` is zero at its removable positions in the masked model
        (:mod:`prunekit.graph.structural.zeros`)."""

    @property
    def func(self) -> Any:
        """The ATen overload being run."""


Rule = Callable[[RuleContext, Sequence[Any], Mapping[str, Any], Any], None]
"""``rule(ctx, args, kwargs, out)``: couple and label for one ATen call."""


def arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str, default: Any) -> Any:
    """Argument ``i`` (or keyword ``name``) of an ATen call, with its schema default."""
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def item(ctx: RuleContext, t: Tensor) -> Item:
    return tuple(t.shape), ctx.slots(t)


def tensors_in(values: Sequence[Any]) -> list[Tensor]:
    found: list[Tensor] = []
    for v in values:
        if isinstance(v, Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(x for x in v if isinstance(x, Tensor))
    return found


def first_tensor(out: Any) -> Tensor:
    return out if isinstance(out, Tensor) else out[0]


def run_on_slots(
    ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], s: Tensor
) -> list[Tensor]:
    """Run the traced op with the slot tensor ``s`` in place of its first argument.

    On a meta trace, other tensor arguments (index tensors) have no values: they are replaced
    by zeros of their shape. That gives the right output shape; the positions they pick are
    wrong, which is harmless because indexing rules fix every unit along indexed dims."""
    rest = [_real(a) for a in args[1:]]
    result = ctx.func(s, *rest, **{k: _real(v) for k, v in kwargs.items()})
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _real(value: Any) -> Any:
    if isinstance(value, Tensor) and value.is_meta:
        return torch.zeros(value.shape, dtype=value.dtype)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)(_real(v) for v in value)
    return value


def labelled_along(ctx: RuleContext, x: Any, dim: int) -> bool:
    """True if ``x`` carries units along ``dim`` (slots align with ``x`` from the right)."""
    if not isinstance(x, Tensor) or not x.dim():
        return False
    dim = dim % x.dim()
    for s in ctx.slots(x):
        d = dim - (x.dim() - s.dim())
        if d >= 0 and s.shape[d] > 1:
            return True
    return False


def fix_along(ctx: RuleContext, x: Tensor, dim: int, *, strict: bool = False) -> None:
    """``dim`` of ``x`` keeps its size (see :meth:`AtomGraph.keep_size`); ``strict`` fixes
    every unit of a slot that varies along it (an index tensor picks positions)."""
    dim = dim % max(x.dim(), 1)
    for s in ctx.slots(x):
        if s.dim() > dim and s.shape[dim] > 1:
            if strict:
                ctx.graph.fix(s)
            else:
                ctx.graph.keep_size(s, dim)
