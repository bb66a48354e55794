"""A PyTorch Lightning ``Callback`` that runs a pruning step callable after every optimizer step.

Install with ``pip install "prunekit[lightning]"``. With a CPU-only torch, torchvision's compiled
ops cannot load; prunekit defines their schemas first (``prunekit.compat``) so that Lightning's
import of torchmetrics -> torchvision works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()

try:
    import lightning.pytorch as pl
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "prunekit.callbacks.lightning needs lightning: pip install 'prunekit[lightning]'"
    ) from err


class PruningCallback(pl.Callback):
    """Calls ``step_fn(trainer.global_step, pl_module)`` after every training batch whose
    optimizer step has run (``global_step`` counts optimizer steps, from 1 here)."""

    def __init__(self, step_fn: Callable[[int, nn.Module], Any]) -> None:
        self.step_fn = step_fn
        self._last = -1

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step != self._last:
            self._last = step
            self.step_fn(step, pl_module)
