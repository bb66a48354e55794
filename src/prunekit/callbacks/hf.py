"""A Hugging Face ``transformers.TrainerCallback`` that runs a pruning step callable.

Install with ``pip install "prunekit[hf]"``. Build the callable (a Stepper, RigL, ...) before the
``Trainer``; masks added during training keep the optimizer's parameters (the parametrization
stores the very same ``Parameter`` as its ``original``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

ensure_torchvision_ops()  # transformers imports torchvision when present

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "prunekit.callbacks.hf needs transformers: pip install 'prunekit[hf]'"
    ) from err


class PruningCallback(TrainerCallback):
    """Calls ``step_fn(state.global_step, model)`` at the end of every optimizer step."""

    def __init__(self, step_fn: Callable[[int, nn.Module], Any]) -> None:
        self.step_fn = step_fn

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if model is None:
            raise RuntimeError("PruningCallback: the Trainer passed no model to on_step_end")
        self.step_fn(int(state.global_step), model)
        return control
