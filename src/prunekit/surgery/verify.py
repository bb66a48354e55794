"""Verification: surgery must equal masking.

Removing units whose weights are zero must not change the outputs. :func:`verify` runs the
physically pruned model and the *reference* (the original with the removed units zeroed) on the
example inputs and requires ``max |pruned - reference| <= atol * max |reference|``; outputs that
hold NaN or inf fail, whichever model gives them. On a mismatch it finds the groups that break it
on their own and raises :class:`VerificationError` naming them.

Not on the example inputs alone: once they pass, both models run again on *fresh inputs*
(:func:`~prunekit.surgery.compare.fresh_inputs`: the same shapes and dtypes, floats drawn at
three times the example inputs' spread, integer ids uniform in their observed range), in the
same mode and with the same tolerance, each output relative to its own scale. The operations the
reference dispatches are recorded on every run: a model whose ``forward`` branches on input
values runs another sequence on the fresh inputs, and is then checked on two more draws (scales
1/4 and 10); all must match, the report counts the paths seen (``paths``) and :func:`verify`
warns that a path none of them took is unverified. A mismatch on a path the example inputs did
not take says so (the groups were traced on the example inputs' path).

Two modes:

- **fast** (the default): both models run in the model's own dtype (float16 / bfloat16 computed
  in float32) and nothing is copied: the pruned model runs as it is, and the reference runs the
  original's own tensors, each multiplied by its 0/1 mask vectors when an operation reads it
  (:func:`~prunekit.surgery.reference.masked_reference`). Extra memory is one masked tensor at a
  time plus activations; time is two forward passes. Float32 round-off is ~1e-7 relative on the
  models measured, while a wrong index gives O(1) relative errors.
- **exhaustive** (``exhaustive=True``): a masked deep copy of the original and a copy of the
  pruned model, both converted to float64 (round-off ~1e-15, so the tolerance can be tight).
  Costs about four times the model's size in memory.

Groups whose units sit under a normalisation over the pruned dimension (LayerNorm, RMSNorm,
GroupNorm with one group, a mean over channels) are *inexact*: zeroing is not removing there,
because the zeros still count in the statistics. For them the reference is the *kept-units
reference* (:mod:`prunekit.surgery.reference`): the masked original with each such normalisation
run on the kept positions only, which the pruned model must match just as tightly. A
normalisation the reference cannot reproduce (a reduction in the model's own ``forward`` code,
not in a module) leaves its groups unverified, with the reason, never verified: the check then
runs with those groups kept, and the pruned model is only run for shapes.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.core.groups import Group, Selection
from prunekit.graph.norms import Normalisation
from prunekit.measure.macs import MacCount
from prunekit.surgery.apply import apply_surgery
from prunekit.surgery.compare import (
    Fresh,
    OpRecorder,
    RunMode,
    VerificationError,
    compare_outputs,
    finite,
    fresh_check,
    judge,
    masked_copy,
    model_dtype,
    reference_copy,
    reference_run,
    run_in_place,
    run_outputs,
    try_run,
)
from prunekit.surgery.plan import check_selection
from prunekit.surgery.reference import (
    KeptUnitsError,
    coverage,
)

__all__ = [
    "DEFAULT_ATOL",
    "FAST_ATOL",
    "UnverifiableGroupError",
    "VerificationError",
    "VerificationReport",
    "compare_outputs",
    "default_atol",
    "find_culprits",
    "masked_copy",
    "reference_copy",
    "run_outputs",
    "verify",
]

DEFAULT_ATOL = 1e-5
"""Default tolerance of a float64 comparison (the exhaustive mode), relative to the largest
absolute output of the reference; float64 round-off is ~1e-15."""

FAST_ATOL = 1e-4
"""Default tolerance of a comparison in float32 (the fast mode), relative: float32 round-off
measured at channel sparsity 0.5 is at most 1e-6 (convnext_tiny; resnet50, vit_b_16,
densenet121, swin_t, efficientnet_b0, mobilenet_v3_large, regnet_y_400mf below), a wrong index
gives O(1) relative errors."""


def default_atol(dtype: torch.dtype | None) -> float:
    """The default relative tolerance of a comparison run in ``dtype`` (``None``: the fast
    mode, in float32 or the model's own wider dtype)."""
    return DEFAULT_ATOL if dtype == torch.float64 else FAST_ATOL


class UnverifiableGroupError(VerificationError):
    """Removing these inexact groups makes the pruned model fail to run (a width they share is
    written in the model's code)."""

    def __init__(self, message: str, groups: Sequence[str]) -> None:
        super().__init__(message)
        self.groups = tuple(groups)


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
        exhaustive: whether the float64 check on copies ran (else the fast one).
        fresh_inputs: how many fresh draws of inputs were compared after the example inputs.
        fresh_relative_diff: the largest relative difference on them (per output, as
            ``relative_diff``).
        paths: distinct operation sequences the reference ran over all compared inputs (more
            than 1: the model's control flow depends on input values).
        macs_before / macs_after: dense MAC counts of the original and the pruned model, made
            during the comparison's forward passes when :func:`verify` was asked to count
            (``None`` otherwise, or where the compared run was not the model as it is);
            :func:`~prunekit.measure.measure` takes them as ``macs=``.

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
    exhaustive: bool = False
    fresh_inputs: int = 0
    fresh_relative_diff: float = 0.0
    paths: int = 1
    macs_before: MacCount | None = field(default=None, repr=False, compare=False)
    macs_after: MacCount | None = field(default=None, repr=False, compare=False)

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


def _mode(exhaustive: bool, dtype: torch.dtype | None, count: bool = False) -> RunMode:
    return RunMode(torch.float64 if exhaustive and dtype is None else dtype, count)


def _inexact(groups: Sequence[Group], inexact: Collection[str] | None) -> frozenset[str]:
    if inexact is not None:
        return frozenset(inexact)
    return frozenset(getattr(groups, "inexact", frozenset()))


def _keep(selection: Selection, names: Collection[str]) -> Selection:
    return {
        k: torch.ones_like(v, dtype=torch.bool) if k in names else v for k, v in selection.items()
    }


def breaking_alone(
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    candidates: Sequence[str],
    example_inputs: Any,
) -> list[str]:
    """The candidate groups whose removal alone makes the pruned model fail (all if none)."""
    if len(candidates) == 1:  # it breaks alone, or it is reported all the same
        return list(candidates)
    keep_all = {g.name: torch.ones(g.n_units, dtype=torch.bool) for g in groups}
    breaking = []
    for name in candidates:
        try:
            pruned, _ = apply_surgery(original, groups, {**keep_all, name: selection[name]})
            run_in_place(pruned, example_inputs)
        except Exception:
            breaking.append(name)
    return breaking or list(candidates)


def refuse_unrunnable(
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    inexact_removed: Sequence[str],
    example_inputs: Any,
    error: Exception,
) -> None:
    """The rule for a pruned model that failed to run with ``error``: if inexact groups were
    removed, raise :class:`UnverifiableGroupError` naming those that break it alone (a width
    they share is written in the model's code, so they are kept whole); else return and let
    the caller report the failure."""
    if not inexact_removed:
        return
    breaking = breaking_alone(original, groups, selection, inexact_removed, example_inputs)
    raise UnverifiableGroupError(
        f"the pruned model fails to run once the inexact groups {breaking} are removed "
        f"({type(error).__name__}: {str(error)[:200]}); a width they share is "
        "probably written in the model's code (exclude the layer that produces it, or "
        "let prunekit.prune keep them)",
        breaking,
    ) from error


def verify(
    original: nn.Module,
    pruned: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    example_inputs: Any,
    *,
    atol: float | None = None,
    exhaustive: bool = False,
    dtype: torch.dtype | None = None,
    inexact: Collection[str] | None = None,
    normalisations: Sequence[Normalisation] | None = None,
    count_macs: bool = False,
) -> VerificationReport:
    """Check that ``pruned`` computes what ``original`` computes with the removed units zeroed.

    The fast mode (default) runs both models as they are, copying no tensor (see the module
    docstring); ``exhaustive=True`` compares float64 copies; ``dtype`` compares copies
    converted to it. ``atol`` is relative to the largest reference output; by default
    :data:`FAST_ATOL` (1e-4) in float32 and :data:`DEFAULT_ATOL` (1e-5) in float64.
    ``inexact`` names groups under a normalisation over their width, and ``normalisations``
    says where those run; by default both are taken from ``groups`` (as
    :func:`prunekit.graph.build_structural_groups` returns them). Inexact groups are checked
    against the kept-units reference; those it cannot reproduce are reported unverified, with
    the reason. With ``count_macs`` (fast mode) the report carries the dense MACs of both
    forward passes. Raises :class:`VerificationError` naming the groups that break the
    equality (NaN or inf in an output fails too), and :class:`UnverifiableGroupError` when
    removing inexact groups makes the pruned model fail to run.
    """
    check_selection(groups, selection)
    mode = _mode(exhaustive, dtype, count_macs)
    if atol is None:
        atol = default_atol(mode.dtype or model_dtype(original))
    skip = _inexact(groups, inexact)
    if normalisations is None:
        normalisations = getattr(groups, "normalisations", ())
    removing = [g.name for g in groups if not bool(selection[g.name].all())]
    got, macs_after, run_error = try_run(mode, pruned, example_inputs)
    inexact_removed = [n for n in removing if n in skip]
    if run_error is not None:
        refuse_unrunnable(original, groups, selection, inexact_removed, example_inputs, run_error)
    reasons = {n: r for n, r in coverage(normalisations, inexact_removed).items() if r}
    want, checked, macs_before, example_ops = _reference_outputs(
        mode, original, groups, selection, normalisations, example_inputs, reasons
    )
    if not finite(want):
        raise VerificationError(
            "cannot verify: the reference (the original with the removed units zeroed) gives "
            "NaN or inf outputs on the example inputs; check the model and its inputs"
        )
    compared = pruned
    if reasons:  # compare a pruned model that keeps the unverifiable groups whole
        compared = apply_surgery(original, groups, checked)[0]
        got, _, run_error = try_run(RunMode(mode.dtype), compared, example_inputs)
        macs_after = None
    diff, scale, tol, failure = judge(got, want, atol, run_error)
    fresh = Fresh(example_inputs, paths=[example_ops])
    if failure is None:
        fresh = fresh_check(
            mode, original, compared, groups, checked, normalisations, example_ops,
            example_inputs, atol,
        )  # fmt: skip
        failure = fresh.failure
    if failure is not None:
        culprits = find_culprits(
            original, groups, checked, fresh.inputs, atol, mode.dtype, frozenset(reasons),
            normalisations,
        )  # fmt: skip
        raise VerificationError(
            f"surgery does not match masking{fresh.where}: {failure}. Groups that break it "
            "on their own: "
            f"{culprits or 'none alone (they fail only together)'}; removed groups: "
            f"{[n for n in removing if n not in reasons][:20]}{fresh.control_flow}"
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
    if len(fresh.paths) > 1:
        warnings.warn(
            f"the model's control flow depends on input values: it ran {len(fresh.paths)} "
            f"operation sequences on {fresh.compared + 1} inputs (the example inputs and "
            f"{fresh.compared} fresh draws); the pruned model matched on each, but a path none "
            "of them took is not verified",
            stacklevel=2,
        )
    return VerificationReport(
        diff, scale, tol, mode.describe(original), verified, unverified, kept_reference,
        {n: reasons[n] for n in unverified}, mode.dtype is not None, fresh.compared,
        fresh.worst, len(fresh.paths), macs_before, macs_after,
    )  # fmt: skip


def _reference_outputs(
    mode: RunMode,
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    normalisations: Sequence[Normalisation],
    example_inputs: Any,
    reasons: dict[str, str],
) -> tuple[list[Tensor], Selection, MacCount | None, list[Any]]:
    """The reference's outputs (and MACs, and its operations), with the groups of ``reasons``
    kept whole. A normalisation the kept-units reference fails to run adds its groups to
    ``reasons`` (changed in place)."""
    while True:
        checked = _keep(selection, reasons)
        recorder = OpRecorder()
        try:
            want, macs = reference_run(
                mode, original, groups, checked, normalisations, example_inputs, recorder
            )
            return want, checked, macs, recorder.ops
        except KeptUnitsError as err:
            new = [n for n in err.groups if n in selection and n not in reasons]
            if not new or all(bool(selection[n].all()) for n in new):
                raise VerificationError(f"the kept-units reference failed: {err}") from err
            reasons.update((n, str(err)) for n in new)
        except Exception:
            if not mode.count:
                raise
            mode = RunMode(mode.dtype)  # counting MACs failed: the run stands without them


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
    reference (masking, on the kept units for normalised groups). ``dtype=None`` compares as
    the fast mode does, a dtype on converted copies."""
    mode = RunMode(dtype)
    keep_all = {g.name: torch.ones(g.n_units, dtype=torch.bool) for g in groups}
    culprits = []
    for group in groups:
        if group.name in skip or bool(selection[group.name].all()):
            continue
        one = {**keep_all, group.name: selection[group.name]}
        try:
            got = mode.pruned(apply_surgery(original, groups, one)[0], example_inputs)[0]
            want = reference_run(mode, original, groups, one, normalisations, example_inputs)[0]
            bad = judge(got, want, atol, None)[3] is not None
        except Exception:
            bad = True
        if bad:
            culprits.append(group.name)
    return culprits
