"""Layer-wise pruning methods: magnitude, Wanda, SparseGPT (registry ``LLM_METHODS``; each is
also an entry of :data:`prunekit.estimators.ESTIMATORS` with capability
``"layerwise-reconstruction"``).

A method prunes one Linear layer given its weight, the statistics of its inputs on the
calibration data and a :class:`SparsityTarget`; it returns a keep mask (and, for SparseGPT, new
values for the kept weights). Score-based methods rank units with prunekit's own selection
(:func:`prunekit.core.select`): per layer, per output row (an N:M group whose ``M`` is the
row length), or N:M.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from prunekit.core.groups import Group, selection_to_masks
from prunekit.core.selection import SelectionConfig, select
from prunekit.errors import ConfigError, DataError, check_sparsity
from prunekit.estimators.base import LAYERWISE
from prunekit.estimators.sparsegpt import sparsegpt_prune
from prunekit.estimators.stats import InputStats
from prunekit.registry import Registry

Compare = Literal["row", "layer"]
"""Where unstructured scores compete: within each output row, or over the whole layer."""


@dataclass(frozen=True)
class SparsityTarget:
    """How much of a layer to remove: ``sparsity`` of its weights (ignored for N:M groups, whose
    pattern fixes it), compared per output ``row`` or over the ``layer``."""

    sparsity: float
    compare: Compare = "row"

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        if self.compare not in ("row", "layer"):
            raise ConfigError(f"compare must be 'row' or 'layer', got {self.compare!r}")


@dataclass(frozen=True)
class LayerPrune:
    """A method's decision for one layer: ``keep`` (0/1, the weight's shape) and, if the kept
    weights change (SparseGPT), their new values."""

    keep: Tensor
    weight: Tensor | None = None


@dataclass(frozen=True)
class LLMMethod(ABC):
    """A named one-shot method; subclasses are frozen dataclasses whose fields are its options."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    needs_data: ClassVar[bool] = True
    needs_hessian: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({LAYERWISE})
    """Layer by layer from calibration input statistics (``prunekit llm prune --method``)."""
    default_compare: ClassVar[Compare] = "row"

    @abstractmethod
    def prune_layer(
        self, group: Group, weight: Tensor, stats: InputStats | None, target: SparsityTarget
    ) -> LayerPrune:
        """Prune the layer whose weight is ``group``'s root tensor."""

    def _require(self, group: Group, stats: InputStats | None) -> InputStats:
        if stats is None or stats.rows == 0:
            raise DataError(
                f"method {self.name!r} needs the inputs of layer {group.layer!r} on calibration "
                "data, and none were recorded"
            )
        return stats


def select_keep(group: Group, scores: Tensor, target: SparsityTarget) -> Tensor:
    """Keep mask of ``group``'s weight from element ``scores`` (the weight's shape)."""
    if group.pattern is None and target.compare == "row":
        cols = int(scores.shape[-1])
        group = dataclasses.replace(group, pattern=(cols - round(target.sparsity * cols), cols))
    config = SelectionConfig(sparsity=target.sparsity, scope="layer", min_keep=0)
    unit_scores = {group.name: group.reduce({group.root.tensor: scores})}
    selection = select(unit_scores, [group], config)
    return selection_to_masks([group], selection)[group.root.tensor]


@dataclass(frozen=True)
class ScoreMethod(LLMMethod):
    """A method that only scores weights; prunekit's selection decides."""

    @abstractmethod
    def scores(self, group: Group, weight: Tensor, stats: InputStats | None) -> Tensor:
        """One score per weight (higher means keep)."""

    def prune_layer(
        self, group: Group, weight: Tensor, stats: InputStats | None, target: SparsityTarget
    ) -> LayerPrune:
        return LayerPrune(select_keep(group, self.scores(group, weight, stats), target))


@dataclass(frozen=True)
class Magnitude(ScoreMethod):
    """``|W|``, compared over the whole layer (the baseline of the Wanda paper)."""

    name: ClassVar[str] = "magnitude"
    summary: ClassVar[str] = "|W| (no data)"
    needs_data: ClassVar[bool] = False
    default_compare: ClassVar[Compare] = "layer"

    def scores(self, group: Group, weight: Tensor, stats: InputStats | None) -> Tensor:
        return weight.detach().float().abs()


@dataclass(frozen=True)
class Wanda(ScoreMethod):
    """``|W_ij| * ||X_j||_2``, compared within each output row.

    Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models".
    """

    name: ClassVar[str] = "wanda"
    summary: ClassVar[str] = "|W| * ||X||_2 per input feature, per output row"

    def scores(self, group: Group, weight: Tensor, stats: InputStats | None) -> Tensor:
        norms = self._require(group, stats).column_norms().to(weight.device)
        return weight.detach().float().abs() * norms[None]


@dataclass(frozen=True)
class SparseGPT(LLMMethod):
    """OBS reconstruction with lazy block updates (see :mod:`prunekit.estimators.sparsegpt`).

    ``blocksize`` columns are updated lazily at once; ``damp`` is added to the Hessian's diagonal
    as a fraction of its mean (the reference code's ``percdamp``).
    """

    name: ClassVar[str] = "sparsegpt"
    summary: ClassVar[str] = "OBS reconstruction with the inverse Hessian of the inputs"
    needs_hessian: ClassVar[bool] = True
    blocksize: int = 128
    damp: float = 0.01

    def __post_init__(self) -> None:
        if self.blocksize < 1 or not self.damp > 0:
            raise ConfigError(
                f"sparsegpt needs blocksize >= 1 and damp > 0, got {self.blocksize}, {self.damp}"
            )

    def prune_layer(
        self, group: Group, weight: Tensor, stats: InputStats | None, target: SparsityTarget
    ) -> LayerPrune:
        hessian = self._require(group, stats).hessian().to(weight.device)
        new, keep = sparsegpt_prune(
            weight,
            hessian,
            sparsity=target.sparsity,
            pattern=group.pattern,
            blocksize=self.blocksize,
            damp=self.damp,
        )
        return LayerPrune(keep.to(weight.dtype), new.to(weight.dtype))


LLM_METHODS: Registry[type[LLMMethod]] = Registry(
    "LLM pruning method", {cls.name: cls for cls in (Magnitude, Wanda, SparseGPT)}
)


def get_llm_method(spec: str | LLMMethod, **options: Any) -> LLMMethod:
    """Build a method by registry name with options (``get_llm_method("sparsegpt", damp=0.1)``)."""
    if isinstance(spec, LLMMethod):
        if options:
            raise ConfigError("options cannot be given with a method instance")
        return spec
    cls = LLM_METHODS.get(spec)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(
            f"method {cls.name!r} has no option {unknown[0]!r}; options: {sorted(valid)}"
        )
    return cls(**options)
