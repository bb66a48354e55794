"""Residual blocks: the submodules whose output can be replaced by their input.

Layer granularity removes whole blocks. A block can go only where the network has a residual
connection around it, ``y = x + f(x)`` (possibly followed by an activation or a normalisation):
replacing it by the identity then keeps the rest of the network fed with a tensor of the right
shape and of roughly the right meaning (Veit et al. 2016, "Residual Networks Behave Like
Ensembles of Relatively Shallow Networks", showed that deleting one such block from a trained
ResNet costs little). A plain layer is never a candidate: removing it changes the function
entirely.

:func:`find_residual_blocks` runs the model once on example inputs, with module hooks that tag
each module's hidden-states input and an ATen dispatch mode that follows which tensors are
computed from which tagged inputs. The rule (also in ``docs/structural.md``): a submodule ``M``
is a *residual block* when, on the example inputs,

1. it runs exactly once and has parameters;
2. its hidden-states input (the first positional tensor argument, or ``hidden_states=``) and its
   hidden-states output (the tensor it returns, or the first item of a returned tuple) have the
   same shape and dtype;
3. while ``M`` runs, an ``add`` takes ``M``'s input itself (or a same-shape view, copy or cast of
   it) as one operand and, as the other, a tensor computed from that input inside ``M``.

Among residual modules, the candidates are chosen so that each is one block:

- a module that only wraps a residual block (same input and same output tensor, e.g. a
  ``Sequential`` holding one block) gives way to the block it wraps;
- a module none of whose residual adds is its own (each belongs to a deeper residual module)
  and that holds a residual module fed by another tensor than its own input is a *stack* of
  blocks (a ResNet stage, a transformer encoder), not a block;
- of nested blocks only the outermost is a candidate (a ``BertLayer``, not the
  ``BertAttention`` inside it); the model itself never is.

The calling convention of a block (where its hidden states go in and come out) lives here too:
:func:`hidden_input`, :func:`hidden_output` and :func:`skipping`, which makes blocks pass their
input through while it is active.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from prunekit.core.groups import Group, Member
from prunekit.core.modes import eval_mode
from prunekit.core.views import AxisView
from prunekit.errors import UnsupportedLayerError
from prunekit.graph.finite import check_finite
from prunekit.graph.running import run_model

HIDDEN_KWARGS: tuple[str, ...] = ("hidden_states", "x", "input")
"""Keyword names under which a block may receive its hidden states (Hugging Face layers use
``hidden_states``)."""

_ADDS = {torch.ops.aten.add, torch.ops.aten.add_}
_SAME_VALUE = {
    torch.ops.aten.alias,
    torch.ops.aten.view,
    torch.ops.aten._unsafe_view,
    torch.ops.aten.clone,
    torch.ops.aten.detach,
    torch.ops.aten._to_copy,
}
"""Ops whose same-shape result still counts as the block's input (``x.clone()``, ``x.float()``)."""

_NONE: frozenset[int] = frozenset()


def hidden_input(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Tensor | None:
    """The hidden states a block receives: its first positional argument if that is a tensor,
    else the first of :data:`HIDDEN_KWARGS` given as a tensor."""
    if args:
        return args[0] if isinstance(args[0], Tensor) else None
    for key in HIDDEN_KWARGS:
        if isinstance(kwargs.get(key), Tensor):
            return kwargs[key]
    return None


def hidden_output(out: Any) -> tuple[Tensor | None, int]:
    """The hidden states a block returns, and ``0`` for a bare tensor or the tuple's length."""
    if isinstance(out, Tensor):
        return out, 0
    if isinstance(out, tuple) and out and isinstance(out[0], Tensor):
        return out[0], len(out)
    return None, 0


def _pass_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
    hidden = hidden_input(args, kwargs)
    if hidden is None:
        raise UnsupportedLayerError(
            f"block {type(module).__name__} received no hidden-states tensor (first positional "
            f"argument or one of {HIDDEN_KWARGS}); it cannot be skipped"
        )
    if isinstance(out, Tensor):
        return hidden
    if isinstance(out, tuple) and out:
        return (hidden, *out[1:])
    raise UnsupportedLayerError(
        f"block {type(module).__name__} returned {type(out).__name__}; skipping it needs a "
        "tensor or a tuple whose first item is the hidden states"
    )


@contextmanager
def skipping(*blocks: nn.Module) -> Iterator[None]:
    """While active, every block in ``blocks`` passes its input hidden states through: a forward
    hook replaces its output (a tensor, or the first item of a tuple) by its input. The blocks
    still run; nothing of theirs changes."""
    handles = [b.register_forward_hook(_pass_input, with_kwargs=True) for b in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class ResidualBlock:
    """A removable block: its module path, class name, the shape of its hidden states on the
    example inputs, and what it returns (``0``: a tensor; ``n``: a tuple of ``n`` items)."""

    name: str
    type: str
    shape: tuple[int, ...]
    tuple_length: int = 0


@dataclass
class _Call:
    """What the hooks saw of one module."""

    name: str
    module: nn.Module
    calls: int = 0
    input: Tensor | None = None
    output: Tensor | None = None
    tuple_length: int = 0


class _ResidualWatch(TorchDispatchMode):
    """Follows, for every tensor, which modules' inputs it is computed from, and records the
    ``add`` ops that close a residual connection around a running module."""

    def __init__(self) -> None:
        super().__init__()
        self.depends: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.is_input: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.active: list[int] = []
        self.residual: set[int] = set()
        self.owners: set[int] = set()

    def enter(self, index: int, hidden: Tensor | None) -> None:
        self.active.append(index)
        if hidden is not None:
            self.depends[hidden] = self.depends.get(hidden, _NONE) | {index}
            self.is_input[hidden] = self.is_input.get(hidden, _NONE) | {index}

    def leave(self) -> None:
        self.active.pop()

    def _check_add(self, a: Any, b: Any) -> None:
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return
        running = set(self.active)
        found = set()
        for x, y in ((a, b), (b, a)):
            found |= self.is_input.get(x, _NONE) & self.depends.get(y, _NONE) & running
        if found:
            self.residual |= found
            self.owners.add(max(found, key=self.active.index))

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in _ADDS and len(args) >= 2:
            self._check_add(args[0], args[1])
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, Tensor)]
        depends = _NONE.union(*(self.depends.get(t, _NONE) for t in inputs))
        if depends:
            for t in outputs:
                self.depends[t] = depends
        if packet in _SAME_VALUE and len(inputs) == 1 and len(outputs) == 1:
            source = self.is_input.get(inputs[0], _NONE)
            if source and outputs[0].shape == inputs[0].shape:
                self.is_input[outputs[0]] = source
        elif func._schema.name.endswith("_") and inputs and inputs[0] in self.is_input:
            del self.is_input[inputs[0]]  # written in place: no longer the block's input
        return out


def _trace_calls(model: nn.Module, example_inputs: Any) -> tuple[list[_Call], _ResidualWatch]:
    watch = _ResidualWatch()
    calls = [_Call(name, module) for name, module in model.named_modules()]
    index = {id(c.module): i for i, c in enumerate(calls)}

    def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        call = calls[index[id(module)]]
        call.calls += 1
        call.input = hidden_input(args, kwargs)
        watch.enter(index[id(module)], call.input)

    def post(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        watch.leave()
        call = calls[index[id(module)]]
        call.output, call.tuple_length = hidden_output(out)

    handles = []
    for call in calls:
        handles.append(call.module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(call.module.register_forward_hook(post, with_kwargs=True))
    try:
        with eval_mode(model), torch.no_grad(), watch:
            run_model(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls, watch


def _is_residual(call: _Call) -> bool:
    x, y = call.input, call.output
    return (
        bool(call.name)
        and call.calls == 1
        and x is not None
        and y is not None
        and x.shape == y.shape
        and x.dtype == y.dtype
        and any(True for _ in call.module.parameters())
    )


def _inside(inner: str, outer: str) -> bool:
    return inner.startswith(outer + ".")


def _choose(calls: Sequence[_Call], residual: Sequence[int], owners: set[int]) -> list[int]:
    """The candidates among residual modules: no wrappers, no stacks, outermost of a nest."""

    def wrapper(i: int) -> bool:
        me = calls[i]
        return any(
            _inside(calls[j].name, me.name)
            and calls[j].input is me.input
            and calls[j].output is me.output
            for j in residual
        )

    def stack(i: int) -> bool:
        me = calls[i]
        return i not in owners and any(
            _inside(calls[j].name, me.name) and calls[j].input is not me.input for j in residual
        )

    chosen = [i for i in residual if not wrapper(i) and not stack(i)]
    return [i for i in chosen if not any(_inside(calls[i].name, calls[j].name) for j in chosen)]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def find_residual_blocks(
    model: nn.Module,
    example_inputs: Any,
    *,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> list[ResidualBlock]:
    """The blocks of ``model`` whose output can be replaced by their input (see the module
    docstring for the rule), in module order.

    The model runs once, for real, in eval mode and without gradients, on ``example_inputs``
    (a tensor, a tuple of positional arguments or a dict of keyword arguments); nothing of it
    changes. ``include`` / ``exclude`` are glob patterns on the blocks' module paths. Example
    inputs holding NaN or infinite values are refused before the model runs.
    """
    check_finite(example_inputs, "example inputs")
    calls, watch = _trace_calls(model, example_inputs)
    residual = [i for i in sorted(watch.residual) if _is_residual(calls[i])]
    blocks = []
    for i in _choose(calls, residual, watch.owners):
        call = calls[i]
        if _matches(call.name, include) and not _matches(call.name, exclude):
            assert call.output is not None
            shape = tuple(call.output.shape)
            blocks.append(
                ResidualBlock(call.name, type(call.module).__name__, shape, call.tuple_length)
            )
    return blocks


def block_groups(model: nn.Module, blocks: Sequence[ResidualBlock]) -> list[Group]:
    """One :class:`Group` per block, with one unit: the whole block.

    Its members are the block's parameters, each viewed as a single unit
    (``AxisView(shape, 0, units=1, repeat=shape[0])``), so any registry estimator's element
    values reduce over the whole block (``reduction="sum"`` or ``"mean"``) and
    :func:`~prunekit.core.select` ranks blocks like any other units. Scalar parameters carry no
    view and are left out of scoring (they go with the block all the same).
    """
    groups = []
    for block in blocks:
        module = model.get_submodule(block.name)
        members = tuple(
            Member(f"{block.name}.{name}", AxisView(tuple(p.shape), 0, 1, 0, p.shape[0]))
            for name, p in module.named_parameters()
            if p.dim() > 0 and p.numel() > 0
        )
        if not members:
            raise UnsupportedLayerError(
                f"block {block.name!r} ({block.type}) has no parameter with a dimension to score"
            )
        groups.append(Group(block.name, block.name, members))
    return groups
