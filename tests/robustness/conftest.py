"""A snapshot of everything prunekit promises not to change in a user's model.

``snapshot(model)`` records, under every name (aliases included), each parameter's and buffer's
object identity, device, dtype, ``requires_grad`` and values, and every module's train/eval flag;
two snapshots compare equal exactly when nothing of that changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

Snapshot = dict[str, Any]


def snapshot(model: nn.Module) -> Snapshot:
    """Everything observable about ``model``'s state, by name, as comparable plain data."""
    tensors: dict[str, Any] = {}
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for name, t in named:
        values = t.detach().cpu().double().flatten().tolist() if t.device.type != "meta" else None
        tensors[name] = (id(t), type(t).__name__, str(t.device), t.dtype, t.requires_grad, values)
    flags = {n: m.training for n, m in model.named_modules(remove_duplicate=False)}
    return {"tensors": tensors, "flags": flags}


@pytest.fixture
def state_of() -> Callable[[nn.Module], Snapshot]:
    return snapshot


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
