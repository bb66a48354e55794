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
from prunekit.norms import recalibrate_batchnorm


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


class ResidualNet(nn.Module):
    """x -> two branches ``bn_a(a(x)) + bn_b(b(x))`` added into a 2-wide stream (one tied group,
    named ``a``: both branches' rows and BatchNorm entries and ``c``'s columns), then a hidden
    layer ``c`` (2 units, group ``c``) and ``d`` -> ``bn_d`` -> one output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Linear(1, 2), nn.BatchNorm1d(2)
        self.b, self.bn_b = nn.Linear(1, 2), nn.BatchNorm1d(2)
        self.c, self.d, self.bn_d = nn.Linear(2, 2), nn.Linear(2, 1), nn.BatchNorm1d(1)

    def forward(self, x: Tensor) -> Tensor:
        stream = self.bn_a(self.a(x)) + self.bn_b(self.b(x))
        return self.bn_d(self.d(F.relu(self.c(stream))))


def residual_net() -> ResidualNet:
    """The net with hand-set weights: ``a(x) = (x, x)``, ``bn_a`` shifts by (1, 3), ``b(x) = 0``,
    ``c`` the identity with bias 10 (so the ReLU passes everything), ``d`` sums. Its BatchNorm
    statistics are estimated on :data:`RESIDUAL_BATCH` (the dense model's, as after training)."""
    torch.manual_seed(0)
    net = ResidualNet()
    with torch.no_grad():
        net.a.weight.fill_(1.0)
        net.a.bias.zero_()
        net.bn_a.bias.copy_(torch.tensor([1.0, 3.0]))
        net.b.weight.zero_()
        net.b.bias.zero_()
        net.c.weight.copy_(torch.eye(2))
        net.c.bias.fill_(10.0)
        net.d.weight.fill_(1.0)
        net.d.bias.zero_()
    recalibrate_batchnorm(net, [RESIDUAL_BATCH], max_batches=None)
    return net.eval()


RESIDUAL_BATCH = (torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.zeros(4, dtype=torch.long))
"""The four inputs the residual net's statistics come from (targets unused)."""
