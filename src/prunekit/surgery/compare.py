"""Running two models for verification and comparing their outputs.

:class:`RunMode` says how verification runs a model: *fast* (in place, in the model's own dtype,
float16 / bfloat16 computed in float32, no copy of any tensor) or on a copy converted to a
``dtype`` (the exhaustive float64 check). :func:`compare_outputs` is the comparison both modes
share: the largest difference relative to the largest reference output, and outputs holding NaN
or inf always fail.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from prunekit.core.modes import eval_mode
from prunekit.errors import PrunekitError
from prunekit.graph.blocks import skipping
from prunekit.graph.running import run_model
from prunekit.measure.macs import MacCount, counting_macs
from prunekit.surgery.reference import HALF_TYPES, Factors, MaskedRun


class VerificationError(PrunekitError, RuntimeError):
    """The physically pruned model does not compute what the masked original computes."""


def _leaves(out: Any) -> list[Tensor]:
    return [v for v in pytree.tree_leaves(out) if isinstance(v, Tensor)]


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point tensor (``None`` if it has none)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def _has_half(model: nn.Module) -> bool:
    return any(t.dtype in HALF_TYPES for t in (*model.parameters(), *model.buffers()))


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that holds ``model``'s own tensors (nothing is copied but the
    modules): hooks and module swaps on it leave ``model`` alone."""
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def run_in_place(
    model: nn.Module,
    inputs: Any,
    factors: Factors | None = None,
    *,
    count: bool = False,
) -> tuple[list[Tensor], MacCount | None]:
    """The outputs of ``model`` run as it is (eval mode, flags restored, no gradients), its
    tensors of ``factors`` masked as they are read, float16 / bfloat16 computed in float32;
    with ``count``, also the dense MACs of the run (see :func:`~prunekit.measure.counting_macs`)."""
    upcast = _has_half(model)
    with contextlib.ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        stack.enter_context(torch.no_grad())
        result = stack.enter_context(counting_macs(model)) if count else None
        if factors or upcast:
            stack.enter_context(MaskedRun(factors or {}, upcast))
        out = run_model(model, inputs)
    return _leaves(out), result() if result is not None else None


def _cast(inputs: Any, dtype: torch.dtype) -> Any:
    return pytree.tree_map(
        lambda v: v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() else v, inputs
    )


def run_outputs(
    model: nn.Module,
    inputs: Any,
    dtype: torch.dtype | None,
    skip: Sequence[str] = (),
    *,
    owned: bool = False,
) -> list[Tensor]:
    """The output tensors of ``model`` in eval mode, with the blocks named in ``skip`` passing
    their input through.

    ``dtype=None`` runs it as it is (float16 / bfloat16 computed in float32), copying no tensor;
    a ``dtype`` runs a copy converted to it (``owned=True``: ``model`` is the caller's own
    throw-away copy, converted in place)."""
    if dtype is None:
        target = shared_copy(model) if skip else model
        with skipping(*(target.get_submodule(name) for name in skip)):
            return run_in_place(target, inputs)[0]
    model = (model if owned else copy.deepcopy(model)).to(dtype)
    model.eval()
    with torch.no_grad(), skipping(*(model.get_submodule(name) for name in skip)):
        return _leaves(run_model(model, _cast(inputs, dtype)))


def finite(tensors: Sequence[Tensor]) -> bool:
    """Whether no floating-point tensor holds NaN or inf."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def compare_outputs(
    got: list[Tensor], want: list[Tensor], atol: float
) -> tuple[float, float, float]:
    """``(max |got - want|, max |want|, tolerance)``; raises :class:`VerificationError` if the
    shapes differ or either side holds NaN or inf."""
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=True)):
        raise VerificationError(
            f"pruned outputs have shapes {[tuple(g.shape) for g in got]}, the original's "
            f"{[tuple(w.shape) for w in want]}"
        )
    for side, outputs in (("reference (masked original)", want), ("pruned model", got)):
        if not finite(outputs):
            raise VerificationError(
                f"the {side}'s outputs hold NaN or inf on the example inputs, so they cannot "
                "be compared"
            )
    diff = max(
        (float((g - w).abs().max()) for g, w in zip(got, want, strict=True) if g.numel()),
        default=0.0,
    )
    scale = max((float(w.abs().max()) for w in want if w.numel()), default=0.0)
    return diff, scale, atol * scale if scale > 0 else atol


@dataclass(frozen=True)
class RunMode:
    """How verification runs a model: ``dtype=None`` is the fast mode (in place, the model's
    own dtype), a dtype runs a converted copy; ``count`` also counts MACs in fast runs."""

    dtype: torch.dtype | None = None
    count: bool = False

    def describe(self, model: nn.Module) -> str:
        if self.dtype is not None:
            return str(self.dtype)
        own = model_dtype(model)
        if own in HALF_TYPES:
            return f"torch.float32 (from {own})"
        return str(own or "model dtype")

    def pruned(self, model: nn.Module, inputs: Any) -> tuple[list[Tensor], MacCount | None]:
        """The pruned model's outputs (and, counting, its MACs)."""
        if self.dtype is None:
            return run_in_place(model, inputs, count=self.count)
        return run_outputs(model, inputs, self.dtype), None
