"""Verification: surgery must equal masking.

Removing units whose weights are zero must not change the outputs. :func:`verify` zeroes the
removed units in a copy of the original, runs it and the physically pruned model on the example
inputs (in float64 by default, so that summation-order noise is ~1e-15 and the tolerance can be
tight), and requires ``max |pruned - masked| <= atol * max |masked|``. On a mismatch it finds the
groups that break it on their own and raises :class:`VerificationError` naming them.

Groups whose units sit under a normalisation over the pruned dimension (LayerNorm, RMSNorm,
GroupNorm with one group, a mean over channels) are *inexact*: zeroing is not removing there,
because the zeros still count in the statistics. For them the reference is the *kept-units
reference* (:mod:`prunekit.surgery.reference`): the masked copy with each such normalisation run
on the kept positions only, which the pruned model must match just as tightly. A normalisation
the reference cannot reproduce (a reduction in the model's own ``forward`` code, not in a
module) leaves its groups unverified, with the reason, never verified: the check then runs with
those groups kept, and the pruned model is only run for shapes.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from prunekit.core.groups import Group, Selection, get_tensor, selection_to_masks
from prunekit.errors import PrunekitError
from prunekit.graph.blocks import skipping
from prunekit.graph.norms import Normalisation
from prunekit.graph.tracer import run_model
from prunekit.surgery.apply import apply_surgery
from prunekit.surgery.plan import check_selection
from prunekit.surgery.reference import KeptUnitsError, coverage, kept_units_reference

DEFAULT_ATOL = 1e-5
"""Default tolerance, relative to the largest absolute output of the masked model."""


class VerificationError(PrunekitError, RuntimeError):
    """The physically pruned model does not compute what the masked original computes."""


class UnverifiableGroupError(VerificationError):
    """Removing these inexact groups makes the pruned model fail to run (a width they share is
    written in the model's code)."""

    def __init__(self, message: str, groups: Sequence[str]) -> None:
        super().__init__(message)
        self.groups = tuple(groups)


def _breaking_alone(
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    candidates: Sequence[str],
    example_inputs: Any,
) -> list[str]:
    """The candidate groups whose removal alone makes the pruned model fail (all if none)."""
    keep_all = {g.name: torch.ones(g.n_units, dtype=torch.bool) for g in groups}
    breaking = []
    for name in candidates:
        try:
            pruned, _ = apply_surgery(original, groups, {**keep_all, name: selection[name]})
            run_outputs(pruned, example_inputs, None)
        except Exception:
            breaking.append(name)
    return breaking or list(candidates)


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of :func:`verify`.

    Attributes:
        max_abs_diff: largest absolute output difference, pruned vs reference.
        scale: largest absolute output of the reference.
        tolerance: the bound ``atol * scale`` (``atol`` if the scale is 0).
        dtype: the dtype both models ran in.
        verified: groups with removed units that the comparison covered.
        unverified: groups with removed units that could not be verified (inexact groups
            under a normalisation the kept-units reference cannot reproduce); ``reasons``
            says why, per group.
        verified_kept_reference: the inexact groups among ``verified``: checked against the
            kept-units reference (their normalisations run on the kept units only) rather
            than against plain masking.

    A comparison whose reference outputs are all exactly zero (``scale == 0``, e.g. a
    zero-initialised classifier such as torchvision ViT's head with ``weights=None``) proves
    nothing: the report is then :attr:`vacuous`, never :attr:`complete`, and :func:`verify`
    warns.
    """

    max_abs_diff: float
    scale: float
    tolerance: float
    dtype: str
    verified: tuple[str, ...]
    unverified: tuple[str, ...]
    verified_kept_reference: tuple[str, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def vacuous(self) -> bool:
        """True if units were removed but every reference output was exactly zero."""
        return self.scale == 0.0 and bool(self.verified or self.unverified)

    @property
    def complete(self) -> bool:
        """True if every group with removed units was verified by a non-vacuous comparison."""
        return not self.unverified and not self.vacuous

    @property
    def relative_diff(self) -> float:
        """``max_abs_diff / scale`` (0 when both are 0)."""
        return self.max_abs_diff / self.scale if self.scale else self.max_abs_diff


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
    """What the pruned model must compute: the masked copy, with every normalisation over
    removed units run on the kept units only (see :mod:`prunekit.surgery.reference`)."""
    return kept_units_reference(masked_copy(model, groups, selection), selection, normalisations)


def run_outputs(
    model: nn.Module, inputs: Any, dtype: torch.dtype | None, skip: Sequence[str] = ()
) -> list[Tensor]:
    """The output tensors of a copy of ``model`` run in ``dtype`` (``None``: its own) in eval
    mode, with the blocks named in ``skip`` passing their input through."""
    model = copy.deepcopy(model)
    if dtype is not None:
        model = model.to(dtype)
        inputs = pytree.tree_map(
            lambda v: v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() else v,
            inputs,
        )
    model.eval()
    with torch.no_grad(), skipping(*(model.get_submodule(name) for name in skip)):
        out = run_model(model, inputs)
    return [v for v in pytree.tree_leaves(out) if isinstance(v, Tensor)]


def compare_outputs(
    got: list[Tensor], want: list[Tensor], atol: float
) -> tuple[float, float, float]:
    """``(max |got - want|, max |want|, tolerance)``; raises if the shapes differ."""
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=True)):
        raise VerificationError(
            f"pruned outputs have shapes {[tuple(g.shape) for g in got]}, the original's "
            f"{[tuple(w.shape) for w in want]}"
        )
    diff = max(
        (float((g - w).abs().max()) for g, w in zip(got, want, strict=True) if g.numel()),
        default=0.0,
    )
    scale = max((float(w.abs().max()) for w in want if w.numel()), default=0.0)
    return diff, scale, atol * scale if scale > 0 else atol


def _inexact(groups: Sequence[Group], inexact: Collection[str] | None) -> frozenset[str]:
    if inexact is not None:
        return frozenset(inexact)
    return frozenset(getattr(groups, "inexact", frozenset()))


def _keep(selection: Selection, names: Collection[str]) -> Selection:
    return {
        k: torch.ones_like(v, dtype=torch.bool) if k in names else v for k, v in selection.items()
    }


def verify(
    original: nn.Module,
    pruned: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    example_inputs: Any,
    *,
    atol: float = DEFAULT_ATOL,
    dtype: torch.dtype | None = torch.float64,
    inexact: Collection[str] | None = None,
    normalisations: Sequence[Normalisation] | None = None,
) -> VerificationReport:
    """Check that ``pruned`` computes what ``original`` computes with the removed units zeroed.

    ``inexact`` names groups under a normalisation over their width, and ``normalisations``
    says where those run; by default both are taken from ``groups`` (as
    :func:`prunekit.graph.build_structural_groups` returns them). Inexact groups are checked
    against the kept-units reference; those it cannot reproduce are reported unverified, with
    the reason. Raises :class:`VerificationError` naming the groups that break the equality,
    and :class:`UnverifiableGroupError` when removing inexact groups makes the pruned model
    fail to run.
    """
    check_selection(groups, selection)
    skip = _inexact(groups, inexact)
    if normalisations is None:
        normalisations = getattr(groups, "normalisations", ())
    removing = [g.name for g in groups if not bool(selection[g.name].all())]
    got, run_error = _try_run(pruned, example_inputs, dtype)
    inexact_removed = [n for n in removing if n in skip]
    if run_error is not None and inexact_removed:
        breaking = _breaking_alone(original, groups, selection, inexact_removed, example_inputs)
        raise UnverifiableGroupError(
            f"the pruned model fails to run once the inexact groups {breaking} are removed "
            f"({type(run_error).__name__}: {str(run_error)[:200]}); a width they share is "
            "probably written in the model's code (exclude the layer that produces it, or "
            "let prunekit.prune keep them)",
            breaking,
        ) from run_error
    reasons = {n: r for n, r in coverage(normalisations, inexact_removed).items() if r}
    want, checked = _reference_outputs(
        original, groups, selection, normalisations, example_inputs, dtype, reasons
    )
    if reasons:  # compare a pruned model that keeps the unverifiable groups whole
        got, run_error = _try_run(
            apply_surgery(original, groups, checked)[0], example_inputs, dtype
        )
    failure = f"the pruned model failed to run ({run_error})" if run_error is not None else None
    diff, scale, tol = float("inf"), 0.0, 0.0
    if got is not None:
        diff, scale, tol = compare_outputs(got, want, atol)
        if diff > tol:
            failure = f"max |pruned - masked| = {diff:.3g} > {tol:.3g}"
    if failure is not None:
        culprits = find_culprits(
            original, groups, checked, example_inputs, atol, dtype, frozenset(reasons),
            normalisations,
        )  # fmt: skip
        raise VerificationError(
            f"surgery does not match masking: {failure}. Groups that break it on their own: "
            f"{culprits or 'none alone (they fail only together)'}; removed groups: "
            f"{[n for n in removing if n not in reasons][:20]}"
        )
    verified = tuple(n for n in removing if n not in reasons)
    unverified = tuple(n for n in removing if n in reasons)
    kept_reference = tuple(n for n in verified if n in skip)
    if removing and scale == 0.0:
        warnings.warn(
            "verification is vacuous: every output of the reference model is exactly zero on "
            "the example inputs (a zero-initialised final layer?), so the comparison proves "
            "nothing; verify with trained or re-initialised weights",
            stacklevel=2,
        )
    return VerificationReport(
        diff, scale, tol, str(dtype or "model dtype"), verified, unverified, kept_reference,
        {n: reasons[n] for n in unverified},
    )  # fmt: skip


def _try_run(
    model: nn.Module, inputs: Any, dtype: torch.dtype | None
) -> tuple[list[Tensor] | None, Exception | None]:
    """The outputs, or the error that running ``model`` raised (the caller finds the group
    responsible)."""
    try:
        return run_outputs(model, inputs, dtype), None
    except Exception as err:
        return None, err


def _reference_outputs(
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    normalisations: Sequence[Normalisation],
    example_inputs: Any,
    dtype: torch.dtype | None,
    reasons: dict[str, str],
) -> tuple[list[Tensor], Selection]:
    """The reference's outputs, with the groups of ``reasons`` kept whole. A normalisation the
    kept-units reference fails to run adds its groups to ``reasons`` (changed in place)."""
    while True:
        checked = _keep(selection, reasons)
        try:
            reference = reference_copy(original, groups, checked, normalisations)
            return run_outputs(reference, example_inputs, dtype), checked
        except KeptUnitsError as err:
            new = [n for n in err.groups if n in selection and n not in reasons]
            if not new or all(bool(selection[n].all()) for n in new):
                raise VerificationError(f"the kept-units reference failed: {err}") from err
            reasons.update((n, str(err)) for n in new)


def find_culprits(
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    example_inputs: Any,
    atol: float,
    dtype: torch.dtype | None,
    skip: frozenset[str] = frozenset(),
    normalisations: Sequence[Normalisation] = (),
) -> list[str]:
    """Groups whose removal alone (everything else kept) makes surgery differ from its
    reference (masking, on the kept units for normalised groups)."""
    keep_all = {g.name: torch.ones(g.n_units, dtype=torch.bool) for g in groups}
    culprits = []
    for group in groups:
        if group.name in skip or bool(selection[group.name].all()):
            continue
        one = {**keep_all, group.name: selection[group.name]}
        try:
            pruned, _ = apply_surgery(original, groups, one)
            got = run_outputs(pruned, example_inputs, dtype)
            want = run_outputs(
                reference_copy(original, groups, one, normalisations), example_inputs, dtype
            )
            diff, _, tol = compare_outputs(got, want, atol)
            bad = diff > tol
        except Exception:
            bad = True
        if bad:
            culprits.append(group.name)
    return culprits
