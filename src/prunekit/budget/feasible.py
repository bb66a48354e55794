"""The candidates a target search confirms obey the refusal rule of verified surgery.

:func:`~prunekit.surgery.verify` keeps an *inexact* group (one under a normalisation over its
width) whole when removing it makes the pruned model fail to run: that width is then written in
the model's code (a torchvision ViT's class token and position embedding fix ``hidden_dim``, so
the residual stream cannot shrink). :func:`~prunekit.budget.select_to_target` confirms its
candidates by real surgery, so it applies the same rule to them through :class:`Feasibility`:
a candidate whose pruned model does not run raises
:class:`~prunekit.surgery.UnverifiableGroupError` naming the inexact groups that break it alone
(:func:`~prunekit.surgery.verify.refuse_unrunnable`, verification's own rule; the search then
runs again with them kept whole), and a failure no inexact group explains is a
:class:`~prunekit.surgery.VerificationError`, as it is in verification.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from torch import nn

from prunekit.core.groups import Group, Selection
from prunekit.graph import build_structural_groups
from prunekit.surgery.compare import VerificationError, run_in_place
from prunekit.surgery.verify import breaking_alone, refuse_unrunnable


def run_error(pruned: nn.Module, example_inputs: Any) -> Exception | None:
    """The error running ``pruned`` on ``example_inputs`` raises, or ``None`` if it runs."""
    try:
        run_in_place(pruned, example_inputs)
    except Exception as err:  # the caller decides whose failure it is
        return err
    return None


class Feasibility:
    """Checks pruned candidates of ``model`` the way verification does. ``inexact`` names the
    inexact groups; ``None`` takes ``groups.inexact`` where the groups carry it (as
    :func:`~prunekit.graph.build_structural_groups` returns them), else traces ``model`` again
    the first time a candidate fails to run. ``where`` starts every error message."""

    def __init__(
        self, model: nn.Module, example_inputs: Any, inexact: Collection[str] | None, where: str
    ) -> None:
        self.model, self.example_inputs, self.where = model, example_inputs, where
        self._inexact = None if inexact is None else frozenset(inexact)

    def inexact(self, groups: Sequence[Group]) -> frozenset[str]:
        if self._inexact is None:
            known = getattr(groups, "inexact", None)
            if known is None:
                known = build_structural_groups(self.model, self.example_inputs).inexact
            self._inexact = frozenset(known)
        return self._inexact

    def check(
        self,
        groups: Sequence[Group],
        selection: Selection,
        pruned: nn.Module,
    ) -> None:
        """Return if ``pruned`` (``model`` with ``selection`` removed) runs. Else raise
        :class:`~prunekit.surgery.UnverifiableGroupError` with the removed inexact groups that
        break it alone (all of them if none does alone), or :class:`VerificationError` if no
        inexact group is removed."""
        error = run_error(pruned, self.example_inputs)
        if error is None:
            return
        removing = [g.name for g in groups if not bool(selection[g.name].all())]
        inexact = self.inexact(groups)
        suspects = [n for n in removing if n in inexact]
        refuse_unrunnable(self.model, groups, selection, suspects, self.example_inputs, error)
        culprits = breaking_alone(self.model, groups, selection, removing, self.example_inputs)
        layers = sorted({g.layer for g in groups if g.name in culprits})
        raise VerificationError(
            f"{self.where}: the pruned model fails to run ({type(error).__name__}: "
            f"{str(error)[:200]}) once the groups {culprits} are removed, and none of them is "
            f"inexact, so surgery is wrong for them; exclude their layers {layers}"
        ) from error
