"""A :class:`~torch.overrides.TorchFunctionMode` that hands Python-level calls with a
:class:`~prunekit.graph.structural.functions.FunctionRule` to that rule during a structural trace;
every other call runs unchanged (the ATen-level tracer sees it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import _disable_current_modes

from prunekit.graph.aten_args import root, tensor_args
from prunekit.graph.structural.context import RuleContext
from prunekit.graph.structural.functions import FUNCTION_RULES


class TracerState(RuleContext, Protocol):
    """What the function mode needs of the ATen-level tracer beyond :class:`RuleContext`: which
    tensors may hold nonzero values where removed units were (``dirty``), and a counter that
    pauses the tracer while an opaque call runs."""

    dirty: Any
    suspended: int


class FunctionTracer(TorchFunctionMode):
    """Hands Python-level calls that have a :class:`FunctionRule` to it (see
    :mod:`prunekit.graph.structural.functions`); every other call runs unchanged."""

    def __init__(self, tracer: TracerState) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        rule = FUNCTION_RULES.lookup(func, args, kwargs)
        tracer = self.tracer
        if rule is None or tracer.suspended or not _labelled(tracer, args, kwargs):
            return func(*args, **kwargs)
        if rule.before is not None:
            with _disable_current_modes():
                rule.before(tracer, args, kwargs)
        if rule.opaque is None:
            return func(*args, **kwargs)
        tracer.suspended += 1
        try:
            out = func(*args, **kwargs)
        finally:
            tracer.suspended -= 1
        with _disable_current_modes():
            rule.opaque(tracer, args, kwargs, out)
            clean = all(tracer.is_clean(t) for t in tensor_args(args, kwargs))
            for t in pytree.tree_leaves(out):
                if isinstance(t, Tensor):
                    tracer.dirty[root(t)] = not clean
        return out


def _labelled(tracer: TracerState, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    return any(tracer.slots(t) for t in tensor_args(args, kwargs))
