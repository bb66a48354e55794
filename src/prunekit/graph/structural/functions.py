"""Rules for Python-level functions whose ATen form hides what pruning must know.

Some facts are gone once a call reaches ATen: ``torch.split(x, 2, 1)`` (a piece size written in
code) and ``x.chunk(4, 1)`` (a piece count) both become ``aten.split.Tensor(x, 2, 1)``;
``F.scaled_dot_product_attention(q, k, v)`` without ``scale=`` computes ``1 / sqrt(E)`` from the
head size (on meta tensors it decomposes into a ``mul`` by that number); ``F.pad(x, p,
"circular")`` becomes ``new_empty`` plus copies into views. The tracer runs a
``TorchFunctionMode`` that hands these calls to a :class:`FunctionRule` first.

A rule has a ``before`` step (couple or fix atoms of the arguments; the call's ATen ops are then
traced as usual) or an ``opaque`` step (the call's ATen ops are not traced; the rule labels the
output from the arguments). Register one for a function of your own with
``FUNCTION_RULES.register("mylib.fused_op", FunctionRule(opaque=...), target=mylib.fused_op)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prunekit.adapters import module_facts
from prunekit.graph.atoms import compress_all, left_pad, vary
from prunekit.graph.couple import couple
from prunekit.graph.structural.context import RuleContext, fix_along, labelled_along

Before = Callable[[RuleContext, Sequence[Any], Mapping[str, Any]], None]
Opaque = Callable[[RuleContext, Sequence[Any], Mapping[str, Any], Any], None]


@dataclass(frozen=True)
class FunctionRule:
    """What to do when a traced forward calls one Python-level function.

    Attributes:
        before: runs on the call's arguments before the call (its ATen ops are traced).
        opaque: if set, the call's ATen ops are not traced and this labels the output.
    """

    before: Before | None = None
    opaque: Opaque | None = None


def _bound(
    args: Sequence[Any], kwargs: Mapping[str, Any], names: Sequence[str], i: int, default: Any
) -> Any:
    return args[i] if len(args) > i else kwargs.get(names[i], default)


def _split_by_size(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``torch.split(x, size, dim)`` / ``x.split(size, dim)``: the piece size (or the list of
    sizes) is written in code, so pruning must keep the split dimension whole: fewer positions
    would give a different number of pieces (``chunk`` keeps its count and is mapped exactly
    by the ATen rule)."""
    names = ("tensor", "split_size_or_sections", "dim")
    x = _bound(args, kwargs, names, 0, None)
    size = _bound(args, kwargs, names, 1, None)
    dim = int(_bound(args, kwargs, names, 2, 0))
    if labelled_along(ctx, x, dim) and not _follows_width(ctx, size):
        ctx.note(f"split into pieces of size {size} written in code keeps dim {dim}", "split")
        fix_along(ctx, x, dim)


def _follows_width(ctx: RuleContext, value: Any) -> bool:
    """True if ``value`` is a width attribute of the module being run that surgery updates
    (:class:`prunekit.adapters.ModuleFacts` ``widths``, e.g. GPT-2's ``split_size``)."""
    modules = ctx.modules()
    if not modules or not isinstance(value, int):
        return False
    module = modules[-1]
    facts = module_facts(module)
    if facts is None:
        return False
    return any(getattr(module, k, None) == v == value for k, v in facts.widths(module).items())


def _sdpa_default_scale(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``F.scaled_dot_product_attention`` without ``scale=`` scales by ``1 / sqrt(E)``, ``E``
    the size of the last dim of ``q``: removing positions inside a head would change it, so
    ``E`` keeps its size (units are whole heads, or nothing)."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    if _bound(args, kwargs, names, 6, None) is not None:
        return
    for i in (0, 1):
        t = _bound(args, kwargs, names, i, None)
        if labelled_along(ctx, t, -1):
            op = "scaled_dot_product_attention"
            ctx.note("without scale= the head size sets the scale: it keeps its size", op)
            fix_along(ctx, t, -1)


def _pad_copying(
    ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any
) -> None:
    """``F.pad`` in a mode that copies positions (circular, reflect, replicate): the padded
    dims hold copies of other positions, so a unit along a padded dim is kept; units along the
    other dims (channels) pass through unchanged."""
    names = ("input", "pad", "mode", "value")
    x = _bound(args, kwargs, names, 0, None)
    if not isinstance(x, Tensor) or not isinstance(out, Tensor):
        return
    padded = set(range(x.dim() - len(_bound(args, kwargs, names, 1, ())) // 2, x.dim()))
    kept = []
    for s in ctx.slots(x):
        s = left_pad(s, x.dim())
        if vary(s) & padded:
            ctx.note("circular padding copies positions of the padded dims", "pad")
            ctx.graph.fix(s)
        else:
            kept.append(s)
    ctx.set_slots(out, compress_all(kept))


def pad_is_opaque(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Only ``F.pad(..., mode="circular")`` is traced as a whole; the other modes are single
    ATen ops with rules of their own."""
    return _bound(args, kwargs, ("input", "pad", "mode", "value"), 2, "constant") == "circular"


def _reshape_as(ctx: RuleContext, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
    """``x.reshape_as(other)`` / ``x.view_as(other)``: the target shape is ``other``'s, which
    follows pruning, so no factor of a split is a constant (unlike ``view(a, b, c)``): the
    positions move exactly and are coupled with ``other``'s, so both lose the same units (the
    reshape of a standardised weight back to the weight's shape)."""
    x, other = args[0], args[1] if len(args) > 1 else kwargs.get("other")
    if not isinstance(x, Tensor) or not isinstance(other, Tensor) or not isinstance(out, Tensor):
        return
    moved = [s.expand(x.shape).reshape(other.shape) for s in ctx.slots(x)]
    items = [(tuple(other.shape), compress_all(moved)), (tuple(other.shape), ctx.slots(other))]
    ctx.set_slots(out, couple(ctx.graph, items, tuple(other.shape)))


@dataclass(frozen=True)
class _Entry:
    target: Any
    rule: FunctionRule
    applies: Callable[[Sequence[Any], Mapping[str, Any]], bool] | None = None


_ENTRIES: dict[str, _Entry] = {
    "torch.split": _Entry(torch.functional.split, FunctionRule(before=_split_by_size)),
    "Tensor.split": _Entry(torch.Tensor.split, FunctionRule(before=_split_by_size)),
    "F.scaled_dot_product_attention": _Entry(
        F.scaled_dot_product_attention, FunctionRule(before=_sdpa_default_scale)
    ),
    "F.pad": _Entry(F.pad, FunctionRule(opaque=_pad_copying), pad_is_opaque),
    "Tensor.reshape_as": _Entry(torch.Tensor.reshape_as, FunctionRule(opaque=_reshape_as)),
    "Tensor.view_as": _Entry(torch.Tensor.view_as, FunctionRule(opaque=_reshape_as)),
}


class FunctionRules:
    """Python functions -> :class:`FunctionRule`, looked up by the function object."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Entry] = {}
        self._by_id: dict[int, _Entry] = {}

    def register(
        self,
        name: str,
        rule: FunctionRule,
        *,
        target: Any,
        applies: Callable[[Sequence[Any], Mapping[str, Any]], bool] | None = None,
    ) -> None:
        """Use ``rule`` for calls of ``target`` (the function object) named ``name``; a rule
        with ``applies`` is used only for the calls it accepts."""
        from prunekit.errors import ConfigError

        if name in self._by_name:
            raise ConfigError(f"function rule {name!r} is already registered")
        entry = _Entry(target, rule, applies)
        self._by_name[name] = entry
        self._by_id[id(target)] = entry

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def lookup(
        self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> FunctionRule | None:
        entry = self._by_id.get(id(func))
        if entry is None or entry.target is not func:
            return None
        if entry.applies is not None and not entry.applies(args, kwargs):
            return None
        return entry.rule


FUNCTION_RULES = FunctionRules()
"""The function rules the tracer consults (see the module docstring)."""
for _name, _entry in _ENTRIES.items():
    FUNCTION_RULES.register(_name, _entry.rule, target=_entry.target, applies=_entry.applies)
