"""The estimator interface: model + groups (+ data) in, one score per unit out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from prunekit.core.groups import Group, Scores
from prunekit.core.scores import check_scores
from prunekit.core.views import REDUCTIONS, Reduction
from prunekit.errors import ConfigError, DataError
from prunekit.estimators.data import ScoringData

UNITS = "units"
"""Capability: scores the units of per-layer or structural groups (weights, channels, heads)."""
BLOCKS = "blocks"
"""Capability: scores whole residual blocks (granularity ``"layer"``)."""
LAYERWISE = "layerwise-reconstruction"
"""Capability: prunes one layer at a time from its calibration input statistics, and may rewrite
the kept weights (language models, ``prunekit llm prune``)."""
CAPABILITIES: tuple[str, ...] = (UNITS, BLOCKS, LAYERWISE)


@dataclass(frozen=True)
class Estimator(ABC):
    """A named way to compute importance scores (higher means keep).

    Subclasses are frozen dataclasses whose fields are the estimator's options. ``score`` checks
    its inputs, calls :meth:`compute`, and checks the result; it never changes the model's
    weights, gradients, buffers or train/eval flags.

    Attributes:
        reduction: how element values are reduced over a unit (``sum``, ``mean`` or ``max``).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({UNITS, BLOCKS})
    """Where it applies (:data:`CAPABILITIES`); weight and gradient estimators lift to blocks by
    reducing over a block's parameters."""
    output_units_only: ClassVar[bool] = False
    """True for activation-based estimators: they score neurons/channels, not single weights."""
    partial: ClassVar[bool] = False
    """True if some units may be left unscored (NaN), e.g. a sampled oracle."""
    structural_only: ClassVar[bool] = False
    """True if it needs structural groups (a channel with its BatchNorm entries, from
    :func:`prunekit.graph.build_structural_groups`): per-layer groups cannot be scored."""

    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ConfigError(
                f"estimator {self.name!r}: reduction must be one of {REDUCTIONS}, "
                f"got {self.reduction!r}"
            )

    def score(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None = None
    ) -> Scores:
        """Scores for every unit of every group."""
        if not groups:
            raise ConfigError(f"estimator {self.name!r}: no groups to score")
        if self.needs_data and data is None:
            raise DataError(
                f"estimator {self.name!r} needs data: pass data= (a loader of (inputs, targets) "
                "batches or a prunekit.ScoringData) and, if not classification, loss_fn="
            )
        if self.output_units_only:
            no_output = [g.name for g in groups if g.output is None]
            if no_output:
                raise ConfigError(
                    f"estimator {self.name!r} scores output units (neurons, channels) from "
                    f"activations; group {no_output[0]!r} has none: use granularity 'channel'"
                )
        scores = {
            name: s.detach().float().cpu() for name, s in self.compute(model, groups, data).items()
        }
        check_scores(scores, groups, allow_nan=self.partial)
        return scores

    @abstractmethod
    def compute(
        self, model: nn.Module, groups: Sequence[Group], data: ScoringData | None
    ) -> Scores:
        """Compute the scores; inputs are already checked."""


def scored_tensor_names(groups: Sequence[Group]) -> list[str]:
    """Every tensor that carries evidence for some group, each once, in group order."""
    return list(dict.fromkeys(m.tensor for g in groups for m in g.members if m.scored))
