"""Running two models for verification and comparing their outputs.

:class:`RunMode` says how verification runs a model: *fast* (in place, in the model's own dtype,
float16 / bfloat16 computed in float32, no copy of any tensor) or on a copy converted to a
``dtype`` (the exhaustive float64 check). :func:`compare_outputs` is the comparison both modes
share: each output's largest difference relative to that output's own largest value, and
outputs holding NaN or inf always fail.

Verification does not trust the example inputs alone: :func:`fresh_inputs` draws inputs of the
same structure, shapes, dtypes and devices at another scale (integer inputs: ids in the observed
range), and :class:`OpRecorder` records the operations a run dispatches, so that a model whose
``forward`` branches on input values (it runs another operation sequence on other inputs) is
noticed instead of being verified on one path only.
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
from torch.utils._python_dispatch import TorchDispatchMode

from prunekit.core.groups import Group, Selection, get_tensor, selection_to_masks
from prunekit.core.modes import eval_mode
from prunekit.errors import PrunekitError
from prunekit.graph.blocks import skipping
from prunekit.graph.norms import Normalisation
from prunekit.graph.running import run_model
from prunekit.measure.macs import MacCount, counting_macs
from prunekit.surgery.reference import (
    HALF_TYPES,
    Factors,
    MaskedRun,
    kept_units_reference,
    masked_reference,
)


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
    """``(max |got - want|, max |want|, tolerance)`` of the output that is worst relative to
    its own scale (the tolerance of output ``i`` is ``atol * max |want_i|``, or ``atol`` when
    that is 0), so a small output next to a large one is checked as tightly; among outputs
    that match exactly, the one with the largest scale (``scale == 0`` only when every output
    is 0). ``diff > tolerance`` exactly when some output fails. Raises
    :class:`VerificationError` if the shapes differ or either side holds NaN or inf."""
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
    per_output = [(0.0, 0.0, atol)]
    for g, w in zip(got, want, strict=True):
        if g.numel():
            scale = float(w.abs().max())
            per_output.append(
                (float((g - w).abs().max()), scale, atol * scale if scale > 0 else atol)
            )
    return max(per_output, key=lambda d: (d[0] / d[2], d[1]))


FRESH_SCALES = (3.0, 0.25, 10.0)
"""Scales of the fresh inputs, relative to the example inputs' spread: the first draw always
runs; the others only when the model ran another operation sequence on the first one."""


def fresh_inputs(inputs: Any, seed: int, scale: float) -> Any:
    """Inputs like ``inputs`` (the same structure, shapes, dtypes and devices), drawn anew
    from a private generator (the global random state is untouched). A floating-point tensor
    becomes ``mean + scale * std * N(0, 1)`` of its own mean and spread (``std`` 1 for a
    single value); a constant one (a mask of ones) and a bool tensor stay as they are; an
    integer tensor gets values uniform in its observed ``[min, max]`` (token ids stay in the
    vocabulary, a constant attention mask stays constant)."""
    generator = torch.Generator().manual_seed(seed)

    def draw(v: Any) -> Any:
        if not isinstance(v, Tensor) or v.dtype == torch.bool or v.numel() == 0:
            return v
        if v.is_floating_point():
            wide = v.detach().double()
            if bool(wide.min() == wide.max()) and v.numel() > 1:
                return v
            std = float(wide.std()) if v.numel() > 1 else 1.0
            noise = torch.randn(v.shape, generator=generator, dtype=torch.float64)
            return (float(wide.mean()) + scale * std * noise).to(v.dtype).to(v.device)
        if v.is_complex():
            return v
        low, high = int(v.min()), int(v.max())
        drawn = torch.randint(low, high + 1, tuple(v.shape), generator=generator)
        return drawn.to(v.dtype).to(v.device)

    return pytree.tree_map(draw, inputs)


class OpRecorder(TorchDispatchMode):
    """Records the operator of every operation dispatched inside it (``ops``), in order: two
    runs of one model with different ``ops`` took different paths through its code."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Any] = []

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> str:
    """Where two operation sequences part, for messages."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"operation {i}: {x} vs {y}"
    return f"{len(a)} vs {len(b)} operations"


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


def judge(
    got: list[Tensor] | None, want: list[Tensor], atol: float, run_error: Exception | None
) -> tuple[float, float, float, str | None]:
    """``(difference, scale, tolerance, failure or None)`` of the pruned outputs ``got``."""
    if got is None:
        return float("inf"), 0.0, 0.0, f"the pruned model failed to run ({run_error})"
    if not finite(got):
        return float("nan"), 0.0, 0.0, "the pruned model's outputs hold NaN or inf"
    diff, scale, tol = compare_outputs(got, want, atol)
    if diff > tol:
        return diff, scale, tol, f"max |pruned - masked| = {diff:.3g} > {tol:.3g}"
    return diff, scale, tol, None


def try_run(
    mode: RunMode, model: nn.Module, inputs: Any
) -> tuple[list[Tensor] | None, MacCount | None, Exception | None]:
    """The outputs (and MACs), or the error that running ``model`` raised (the caller finds
    the group responsible). A run that fails while counting MACs runs again without counting:
    a failure to measure must not fail verification."""
    try:
        return (*mode.pruned(model, inputs), None)
    except Exception as err:
        if not mode.count:
            return None, None, err
    return try_run(RunMode(mode.dtype), model, inputs)


def masked_copy(model: nn.Module, groups: Sequence[Group], selection: Selection) -> nn.Module:
    """A copy of ``model`` whose removed units are zero in every member tensor."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in selection_to_masks(groups, selection).items():
            t = get_tensor(masked, name)
            t.mul_(mask.to(device=t.device, dtype=t.dtype))
    return masked


def reference_copy(
    model: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    normalisations: Sequence[Normalisation] = (),
) -> nn.Module:
    """What the pruned model must compute, as a copy: the masked copy, with every
    normalisation over removed units run on the kept units only (see
    :mod:`prunekit.surgery.reference`; fast verification builds the same reference without
    copying tensors, :func:`~prunekit.surgery.reference.masked_reference`)."""
    return kept_units_reference(masked_copy(model, groups, selection), selection, normalisations)


def reference_run(
    mode: RunMode,
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    normalisations: Sequence[Normalisation],
    inputs: Any,
    recorder: OpRecorder | None = None,
) -> tuple[list[Tensor], MacCount | None]:
    """The reference's outputs, and its MACs when counting in fast mode on ``original``'s own
    module tree (the MACs of the original: masking changes no shape); ``recorder`` records
    the operations of the run."""
    with recorder if recorder is not None else contextlib.nullcontext():
        if mode.dtype is not None:
            reference = reference_copy(original, groups, selection, normalisations)
            return run_outputs(reference, inputs, mode.dtype, owned=True), None
        tree, factors = masked_reference(original, groups, selection, normalisations)
        return run_in_place(tree, inputs, factors, count=mode.count and tree is original)


@dataclass
class Fresh:
    """The outcome of the comparison on fresh inputs: the inputs of a failure (else the example
    inputs), the operation sequences seen, the draws compared and the worst relative
    difference."""

    inputs: Any
    paths: list[list[Any]]
    compared: int = 0
    worst: float = 0.0
    failure: str | None = None

    @property
    def where(self) -> str:
        return " on fresh inputs" if self.failure is not None and self.compared else ""

    @property
    def control_flow(self) -> str:
        if len(self.paths) < 2:
            return ""
        return (
            ". The model ran another operation sequence on these inputs than on the example "
            f"inputs ({first_difference(self.paths[0], self.paths[-1])}): its control flow "
            "depends on input values, and the groups were traced on the example inputs' path"
        )


def fresh_check(
    mode: RunMode,
    original: nn.Module,
    pruned: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    normalisations: Sequence[Normalisation],
    example_ops: list[Any],
    example_inputs: Any,
    atol: float,
) -> Fresh:
    """Compare ``pruned`` with the reference on fresh draws of the inputs: one, or all of
    :data:`~prunekit.surgery.compare.FRESH_SCALES` when the reference's operations change."""
    run = RunMode(mode.dtype)
    fresh = Fresh(example_inputs, [example_ops])
    for seed, spread in enumerate(FRESH_SCALES):
        inputs = fresh_inputs(example_inputs, seed, spread)
        recorder = OpRecorder()
        want = reference_run(run, original, groups, selection, normalisations, inputs, recorder)[0]
        if all(recorder.ops != ops for ops in fresh.paths):
            fresh.paths.append(recorder.ops)
        got, _, run_error = try_run(run, pruned, inputs)
        fresh.compared += 1
        fresh.inputs = inputs
        if not finite(want):
            fresh.failure = (
                f"the reference gives NaN or inf on inputs drawn at {spread}x the example "
                "inputs' spread, so nothing can be compared there"
            )
            return fresh
        diff, scale, _, fresh.failure = judge(got, want, atol, run_error)
        if fresh.failure is not None:
            return fresh
        fresh.worst = max(fresh.worst, diff / scale if scale else diff)
        if len(fresh.paths) == 1:
            break
    fresh.inputs = example_inputs
    return fresh
