"""Verification: surgery must equal masking.

Removing units whose weights are zero must not change the outputs. :func:`verify` zeroes the
removed units in a copy of the original, runs it and the physically pruned model on the example
inputs (in float64 by default, so that summation-order noise is ~1e-15 and the tolerance can be
tight), and requires ``max |pruned - masked| <= atol * max |masked|``. On a mismatch it finds the
groups that break it on their own and raises :class:`VerificationError` naming them.

Groups whose units sit under a normalisation over the pruned dimension (LayerNorm, a mean over
channels) are *inexact*: zeroing is not removing there. They are reported as unverified, never as
verified: the check runs with them kept, and the pruned model is only run for shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from prunekit.core.groups import Group, Selection, get_tensor, selection_to_masks
from prunekit.errors import PrunekitError
from prunekit.graph.tracer import run_model
from prunekit.surgery.apply import apply_surgery
from prunekit.surgery.plan import check_selection

DEFAULT_ATOL = 1e-5
"""Default tolerance, relative to the largest absolute output of the masked model."""


class VerificationError(PrunekitError, RuntimeError):
    """The physically pruned model does not compute what the masked original computes."""


class UnverifiableGroupError(VerificationError):
    """Removing these unverifiable (inexact) groups makes the pruned model fail to run."""

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
            _run(pruned, example_inputs, None)
        except Exception:
            breaking.append(name)
    return breaking or list(candidates)


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of :func:`verify`.

    Attributes:
        max_abs_diff: largest absolute output difference, pruned vs masked.
        scale: largest absolute output of the masked model.
        tolerance: the bound ``atol * scale`` (``atol`` if the scale is 0).
        dtype: the dtype both models ran in.
        verified: groups with removed units that the comparison covered.
        unverified: groups with removed units that could not be verified (inexact).
    """

    max_abs_diff: float
    scale: float
    tolerance: float
    dtype: str
    verified: tuple[str, ...]
    unverified: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True if every group with removed units was verified."""
        return not self.unverified


def masked_copy(model: nn.Module, groups: Sequence[Group], selection: Selection) -> nn.Module:
    """A copy of ``model`` whose removed units are zero in every member tensor."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in selection_to_masks(groups, selection).items():
            t = get_tensor(masked, name)
            t.mul_(mask.to(device=t.device, dtype=t.dtype))
    return masked


def _run(model: nn.Module, inputs: Any, dtype: torch.dtype | None) -> list[Tensor]:
    model = copy.deepcopy(model)
    if dtype is not None:
        model = model.to(dtype)
        inputs = pytree.tree_map(
            lambda v: v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() else v,
            inputs,
        )
    model.eval()
    with torch.no_grad():
        out = run_model(model, inputs)
    return [v for v in pytree.tree_leaves(out) if isinstance(v, Tensor)]


def _compare(got: list[Tensor], want: list[Tensor], atol: float) -> tuple[float, float, float]:
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
) -> VerificationReport:
    """Check that ``pruned`` computes what ``original`` computes with the removed units zeroed.

    ``inexact`` names groups that cannot be verified by masking; by default it is taken from
    ``groups.inexact`` (set by :func:`prunekit.graph.build_structural_groups`). Raises
    :class:`VerificationError` naming the groups that break the equality.
    """
    check_selection(groups, selection)
    skip = _inexact(groups, inexact)
    removing = [g.name for g in groups if not bool(selection[g.name].all())]
    unverified = tuple(n for n in removing if n in skip)
    checked = dict(selection)
    reference = pruned
    if unverified:
        for name in unverified:
            checked[name] = torch.ones_like(selection[name], dtype=torch.bool)
        reference, _ = apply_surgery(original, groups, checked)
        try:
            _compare(
                _run(pruned, example_inputs, dtype), _run(reference, example_inputs, dtype), 1e9
            )
        except Exception as err:
            breaking = _breaking_alone(original, groups, selection, unverified, example_inputs)
            raise UnverifiableGroupError(
                f"the pruned model fails to run once the unverifiable groups {breaking} are "
                f"removed ({type(err).__name__}: {str(err)[:200]}); a width they share is "
                "probably written in the model's code (exclude the layer that produces it, or "
                "let prunekit.prune keep them)",
                breaking,
            ) from err
    want = _run(masked_copy(original, groups, checked), example_inputs, dtype)
    try:
        got = _run(reference, example_inputs, dtype)
        diff, scale, tol = _compare(got, want, atol)
        failure = None if diff <= tol else f"max |pruned - masked| = {diff:.3g} > {tol:.3g}"
    except VerificationError:
        raise
    except Exception as err:  # the pruned model failed to run: find the group responsible
        failure, diff, scale, tol = (
            f"the pruned model failed to run ({err})",
            float("inf"),
            0.0,
            0.0,
        )
    if failure is not None:
        culprits = find_culprits(original, groups, checked, example_inputs, atol, dtype, skip)
        raise VerificationError(
            f"surgery does not match masking: {failure}. Groups that break it on their own: "
            f"{culprits or 'none alone (they fail only together)'}; removed groups: "
            f"{[n for n in removing if n not in skip][:20]}"
        )
    verified = tuple(n for n in removing if n not in skip)
    return VerificationReport(diff, scale, tol, str(dtype or "model dtype"), verified, unverified)


def find_culprits(
    original: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    example_inputs: Any,
    atol: float,
    dtype: torch.dtype | None,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """Groups whose removal alone (everything else kept) makes surgery differ from masking."""
    keep_all = {g.name: torch.ones(g.n_units, dtype=torch.bool) for g in groups}
    culprits = []
    for group in groups:
        if group.name in skip or bool(selection[group.name].all()):
            continue
        one = {**keep_all, group.name: selection[group.name]}
        try:
            pruned, _ = apply_surgery(original, groups, one)
            got = _run(pruned, example_inputs, dtype)
            want = _run(masked_copy(original, groups, one), example_inputs, dtype)
            diff, _, tol = _compare(got, want, atol)
            bad = diff > tol
        except Exception:
            bad = True
        if bad:
            culprits.append(group.name)
    return culprits
