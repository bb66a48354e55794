"""A tiny MLP and a CNN with BatchNorm for search tests, and their data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn


def mlp() -> nn.Module:
    """4 -> 10 -> 10 -> 3: 170 weight MACs per sample (40 + 100 + 30)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3)
    ).eval()


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip


def batches(shape: tuple[int, ...], classes: int, count: int, seed: int = 0) -> list[Any]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, *shape, generator=g), torch.randint(0, classes, (8,), generator=g))
        for _ in range(count)
    ]


@pytest.fixture
def mlp_case() -> tuple[nn.Module, torch.Tensor, list[Any]]:
    return mlp(), torch.randn(1, 4), batches((4,), 3, 4)


@pytest.fixture
def cnn_case() -> tuple[nn.Module, torch.Tensor, list[Any]]:
    return cnn(), torch.randn(1, 1, 8, 8), batches((1, 8, 8), 4, 4)
