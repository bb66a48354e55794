"""What a model's forward pass returns, reduced to the logits the losses and metrics need.

Reference models, torchvision and timm return a tensor; Hugging Face models return a
``ModelOutput`` whose ``logits`` hold them; other code returns a tuple or a dict. One helper
reads them all, so training, evaluation, scoring and distillation accept any of these models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from prunekit.errors import DataError


def logits_of(outputs: Any) -> Tensor:
    """The logits in ``outputs``: the tensor itself, its ``logits`` attribute or key (a Hugging
    Face ``ModelOutput``), or the first tensor of a tuple or list."""
    if isinstance(outputs, Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), Tensor):
        return outputs["logits"]
    if isinstance(outputs, Sequence) and not isinstance(outputs, str):
        for item in outputs:
            if isinstance(item, Tensor):
                return item
    raise DataError(
        f"cannot find logits in the model's output of type {type(outputs).__name__}: return a "
        "tensor, an object with .logits, or pass loss_fn= that reads your output"
    )


def cross_entropy(outputs: Any, targets: Tensor) -> Tensor:
    """Cross-entropy of the logits in ``outputs`` (see :func:`logits_of`) against class labels:
    prunekit's default loss for scoring, training and evaluation."""
    return F.cross_entropy(logits_of(outputs), targets)
