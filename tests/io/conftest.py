"""Small hand-built models and helpers for the save/load tests, handed out as fixtures.

(Test modules here are imported under package names that depend on how pytest is started, so
helpers are shared through fixtures rather than imports.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from prunekit.io import save
from prunekit.masks import apply_masks, masks_of


class MLP(nn.Module):
    def __init__(self, d_in: int = 4, hidden: int = 8, d_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class TiedLM(nn.Module):
    """A tiny language model whose output layer shares the embedding matrix."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.decoder = nn.Linear(dim, vocab, bias=False)
        self.decoder.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.decoder(torch.tanh(self.mix(self.embed(tokens))))


def _conv_bn_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 2),
    )


def _seeded(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def make(*args: int, seed: int = 123) -> nn.Module:
        torch.manual_seed(seed)
        return build(*args)

    return make


Snapshot = tuple[dict[str, Tensor], dict[str, Tensor]]


def _snapshot(model: nn.Module) -> Snapshot:
    """Everything a failed load must leave alone: raw state (with parametrizations) and masks."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, masks_of(model)


def _assert_same(before: Snapshot, after: Snapshot) -> None:
    for old, new in zip(before, after, strict=True):
        assert old.keys() == new.keys()
        for key in old:
            assert torch.equal(old[key], new[key]), key


@pytest.fixture
def make_mlp() -> Callable[..., nn.Module]:
    """``make_mlp(d_in=4, hidden=8, d_out=3, seed=123)``."""
    return _seeded(MLP)


@pytest.fixture
def make_tied() -> Callable[..., nn.Module]:
    return _seeded(TiedLM)


@pytest.fixture
def make_conv_bn() -> Callable[..., nn.Module]:
    return _seeded(_conv_bn_net)


@pytest.fixture
def snapshot() -> Callable[[nn.Module], Snapshot]:
    return _snapshot


@pytest.fixture
def assert_unchanged() -> Callable[[Snapshot, nn.Module], None]:
    def check(before: Snapshot, model: nn.Module) -> None:
        _assert_same(before, _snapshot(model))

    return check


@pytest.fixture
def x() -> Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def masked_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = MLP()
    gen = torch.Generator().manual_seed(2)
    apply_masks(
        model,
        {
            "fc1.weight": (torch.rand(8, 4, generator=gen) > 0.5).float(),
            "fc2.bias": torch.tensor([1.0, 0.0, 1.0]),
        },
    )
    return model


@pytest.fixture
def saved_masked(tmp_path: Path, masked_mlp: nn.Module) -> Path:
    return save(masked_mlp, tmp_path / "ckpt")
