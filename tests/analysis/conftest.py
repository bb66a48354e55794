"""A small MLP trained on scikit-learn digits (real data), shared by the analysis tests.

The tensors here are tiny, so intra-op threads only cost time, and on a loaded shared machine
they cost a lot (OpenMP workers waiting for cores: 20x slower measured). Tests in this folder run
single-threaded; the previous setting is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from prunekit import ScoringData
from prunekit.masks import masks_of


@dataclass(frozen=True)
class Digits:
    model: nn.Module
    data: ScoringData
    x_test: Tensor
    y_test: Tensor


def train_digits_mlp(hidden: int = 64, steps: int = 150, seed: int = 0) -> Digits:
    """64 -> hidden -> hidden -> 10 MLP, full-batch Adam on 1,200 digits (96% test accuracy)."""
    x, y = load_digits(return_X_y=True)
    xs = torch.tensor(x / 16.0, dtype=torch.float32)
    ys = torch.tensor(y)
    perm = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))
    xs, ys = xs[perm], ys[perm]
    x_train, y_train = xs[:1200], ys[:1200]
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(x_train), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    batches = [(x_train[i : i + 300], y_train[i : i + 300]) for i in range(0, 1200, 300)]
    return Digits(model, ScoringData(batches, progress=False), xs[1200:], ys[1200:])


@contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def _single_threaded() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def digits() -> Digits:
    with one_thread():
        return train_digits_mlp()


@dataclass(frozen=True)
class ModelState:
    """Everything about a model that analysis must leave exactly as it was."""

    tensors: dict[str, Tensor]
    identities: dict[str, int]
    grads: dict[str, Tensor | None]
    training: dict[str, bool]
    classes: dict[str, type]
    masks: dict[str, Tensor]

    @classmethod
    def of(cls, model: nn.Module) -> ModelState:
        return cls(
            tensors={k: v.detach().clone() for k, v in model.state_dict().items()},
            identities={k: id(p) for k, p in model.named_parameters()},
            grads={
                k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()
            },
            training={k: m.training for k, m in model.named_modules()},
            classes={k: type(m) for k, m in model.named_modules()},
            masks=masks_of(model),
        )

    def assert_same(self, model: nn.Module) -> None:
        now = ModelState.of(model)
        assert now.tensors.keys() == self.tensors.keys()
        for k, v in self.tensors.items():
            assert torch.equal(now.tensors[k], v), k
        assert now.identities == self.identities
        assert now.grads.keys() == self.grads.keys()
        for k, g in self.grads.items():
            other = now.grads[k]
            assert (g is None and other is None) or (
                g is not None and other is not None and torch.equal(g, other)
            ), k
        assert now.training == self.training
        assert now.classes == self.classes
        assert now.masks.keys() == self.masks.keys()
        for k, m in self.masks.items():
            assert torch.equal(now.masks[k], m), k


@pytest.fixture
def model_state() -> type[ModelState]:
    """``model_state.of(model)`` snapshots a model; ``.assert_same(model)`` checks it."""
    return ModelState
