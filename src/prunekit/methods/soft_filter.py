"""Soft filter pruning (He et al. 2018, "Soft Filter Pruning for Accelerating Deep CNNs").

Every ``frequency`` steps the lowest-scoring filters of each layer are set to zero but *not*
masked: they keep receiving gradient and may grow back, and the choice is made again at the next
update. :meth:`SoftFilterPruning.finalize` masks the last selection for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.api import prune
from prunekit.core.groups import Masks
from prunekit.errors import ConfigError, check_sparsity
from prunekit.recovery.originals import original_tensor
from prunekit.result import PruneResult


@dataclass
class SoftFilterPruning:
    """Zero the ``sparsity`` fraction of filters per layer with the smallest L2 norm, every
    ``frequency`` steps (an ``on_step`` callable)."""

    sparsity: float
    frequency: int = 100
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    last: Masks = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        if self.frequency < 1:
            raise ConfigError(f"frequency must be >= 1, got {self.frequency!r}")

    def _select(self, model: nn.Module, *, inplace: bool = False) -> PruneResult:
        """Layer-wise L2 filter selection (He et al. 2018) at ``sparsity``."""
        return prune(
            model,
            sparsity=self.sparsity,
            granularity="channel",
            scope="layer",
            estimator="magnitude",
            estimator_options={"p": 2},
            include=self.include,
            exclude=self.exclude,
            inplace=inplace,
        )

    @torch.no_grad()
    def __call__(self, step: int, model: nn.Module) -> bool:
        if step % self.frequency:
            return False
        masks = self._select(model).masks
        if masks is None:  # _select masks, never surgery
            raise RuntimeError("soft filter pruning selected by surgery instead of masks")
        self.last = masks
        for name, mask in self.last.items():
            original_tensor(model, name).mul_(mask.to(original_tensor(model, name)))
        return True

    def finalize(self, model: nn.Module) -> PruneResult:
        """Mask (in place) the filters selected now; they stay zero from here on."""
        return self._select(model, inplace=True)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
