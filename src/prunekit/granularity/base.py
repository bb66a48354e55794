"""The granularity interface and how it turns a model into groups."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from torch import nn

from prunekit.core.groups import Group
from prunekit.errors import ConfigError
from prunekit.granularity.tied import merge_tied
from prunekit.graph.tracer import check_ignore
from prunekit.ops.rules import LayerRule, prunable_layers


class Granularity(ABC):
    """What a unit is, for every layer a rule knows.

    Subclasses are small frozen dataclasses: their fields are the granularity's settings
    (``NM(n=2, m=4)``, ``Block(rows=4, cols=4)``) and :meth:`spec` writes them back as the string
    users type in the CLI and recipes.
    """

    name: ClassVar[str]
    unit: ClassVar[str]
    """What one unit is: ``"weight"``, ``"slot"`` (an N:M position), ``"tile"``, ``"channel"``
    (a neuron or filter) or ``"block"`` (a whole residual block)."""
    structural: ClassVar[bool] = False
    """True if units are whole structures (neurons, channels, blocks) that surgery can remove
    physically; activation estimators need whole output units."""
    maskable: ClassVar[bool] = True
    """True if units can be removed reversibly by masks."""
    needs_surgery: ClassVar[bool] = False
    """True if units can only be removed by surgery (a skipped block has no mask)."""

    @abstractmethod
    def group(self, layer: str, module: nn.Module, rule: LayerRule) -> Group:
        """The group of units of one layer."""

    @property
    def pattern(self) -> tuple[int, int] | None:
        """``(n, m)`` if selection is fixed to keep ``n`` of every ``m`` units."""
        return None

    def spec(self) -> str:
        return self.name


def build_groups(
    model: nn.Module,
    granularity: Granularity,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> list[Group]:
    """One group per prunable layer of ``model`` (by name patterns), at ``granularity``.

    Layers that share a tensor (tied weights) are one group: the shared tensor gets one
    decision (:func:`~prunekit.granularity.tied.merge_tied`). An ``exclude`` pattern that
    matches no module is a :class:`~prunekit.errors.ConfigError` with a did-you-mean, as in
    structural pruning.
    """
    if isinstance(exclude, str):
        exclude = (exclude,)
    check_ignore(model, tuple(exclude))
    groups = [
        granularity.group(name, module, rule)
        for name, module, rule in prunable_layers(model, include, exclude)
    ]
    if not groups:
        raise ConfigError(
            f"no prunable layer in the model matches include={list(include)} "
            f"exclude={list(exclude)}"
        )
    return merge_tied(model, groups)
