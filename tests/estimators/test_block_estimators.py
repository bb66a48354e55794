"""Block estimators: angular distance and the skip oracle with hand-worked answers, lifted
registry estimators."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.core.groups import Group, Member
from prunekit.core.views import AxisView
from prunekit.errors import ConfigError
from prunekit.estimators import ScoringData
from prunekit.estimators.blocks import (
    Angular,
    SkipOracle,
    angular_distances,
    block_estimator,
)
from prunekit.estimators.weights import Magnitude
from prunekit.graph.blocks import block_groups, find_residual_blocks
from prunekit.surgery.layers import remove_residual_blocks


class Rotate(nn.Module):
    """``x + R x`` with ``R`` the 90-degree rotation: the output is ``x`` turned by 45 degrees."""

    def __init__(self) -> None:
        super().__init__()
        self.rot = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.rot.weight.copy_(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.rot(x)


class ZeroBranch(nn.Module):
    """``relu(x + bn(conv(x)))`` with the BN scale and shift zero: the branch is 0, and for
    ``x >= 0`` the block is the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        with torch.no_grad():
            self.bn.weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 1)
        self.zero = ZeroBranch()
        self.live = ZeroBranch()
        self.head = nn.Linear(2, 3)
        with torch.no_grad():
            self.live.bn.weight.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.live(self.zero(torch.relu(self.stem(x))))
        return self.head(h.mean(dim=(2, 3)))


def _data(shape: tuple[int, ...], classes: int = 3, n: int = 2) -> ScoringData:
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(8, *shape, generator=gen), torch.randint(0, classes, (8,), generator=gen))
        for _ in range(n)
    ]
    return ScoringData(batches, progress=False)


def _groups(model: nn.Module, x: Tensor) -> list[Group]:
    return block_groups(model, find_residual_blocks(model, x))


def test_angular_distance_hand_worked() -> None:
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # [batch 1, 2 tokens, 2 features]
    y = torch.tensor([[[1.0, 1.0], [0.0, -3.0]]])
    per_token = angular_distances(x, y, "token")
    torch.testing.assert_close(per_token, torch.tensor([[1 - 1 / math.sqrt(2), 2.0]]))
    per_sample = angular_distances(x, y, "sample")  # (1*1 + 2*-3) / (sqrt5 * sqrt11)
    torch.testing.assert_close(per_sample, torch.tensor([1 + 5 / math.sqrt(55)]))
    zero = torch.zeros(1, 3)  # unchanged zero vectors: 0, not 1 - cos(0, 0) = 1
    assert float(angular_distances(zero, zero, "sample")) == 0.0


def test_angular_of_a_45_degree_rotation_and_of_a_zero_branch() -> None:
    rotate = nn.Sequential(nn.Linear(2, 2), Rotate(), nn.Linear(2, 3))
    groups = _groups(rotate, torch.randn(1, 2))
    assert [g.name for g in groups] == ["1"]
    scores = Angular().score(rotate, groups, _data((2,)))
    assert float(scores["1"]) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)

    torch.manual_seed(0)
    net = Net().eval()
    groups = _groups(net, torch.randn(1, 1, 4, 4))
    scores = Angular().score(net, groups, _data((1, 4, 4)))
    assert float(scores["zero"]) == 0.0
    assert float(scores["live"]) > 1e-3


def test_angular_compares_tokens_of_transformer_shaped_hidden_states() -> None:
    model = nn.Sequential(nn.Linear(2, 2), Rotate(), nn.Linear(2, 3))
    groups = _groups(model, torch.randn(1, 5, 2))
    batches = [(torch.randn(2, 5, 2), torch.zeros(2, 5, dtype=torch.long))]

    def loss_fn(out: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(out.flatten(0, 1), targets.flatten())

    data = ScoringData(batches, loss_fn=loss_fn, progress=False)
    for per in ("auto", "token"):  # every token is turned by 45 degrees
        score = float(Angular(per=per).score(model, groups, data)["1"])
        assert score == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)


def _trained_residual_mlp() -> tuple[nn.Module, ScoringData]:
    """A 2-block residual MLP trained for a few steps on a separable 3-class problem."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 4, generator=gen) * 3
    labels = torch.randint(0, 3, (96,), generator=gen)
    inputs = centres[labels] + torch.randn(96, 4, generator=gen)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: Tensor) -> Tensor:
            return x + torch.tanh(self.fc(x))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), Block(), Block(), nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    batches = [(inputs[i : i + 32], labels[i : i + 32]) for i in range(0, 96, 32)]
    return model.eval(), ScoringData(batches, progress=False)


def _mean_loss(model: nn.Module, data: ScoringData) -> float:
    with torch.no_grad():
        losses = [float(F.cross_entropy(model(x), t)) for x, t in data.batches]
    return sum(losses) / len(losses)


def test_skip_oracle_is_the_loss_change_of_removing_the_block() -> None:
    model, data = _trained_residual_mlp()
    blocks = find_residual_blocks(model, data.batches[0][0])
    groups = block_groups(model, blocks)
    scores = SkipOracle().score(model, groups, data)
    dense = _mean_loss(model, data)
    assert dense < 0.5  # trained-ish
    for block, group in zip(blocks, groups, strict=True):
        removed, _ = remove_residual_blocks(model, [block])
        expected = _mean_loss(removed, data) - dense
        assert float(scores[group.name]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    with torch.no_grad():  # a block whose branch is zero costs nothing
        model[1].fc.weight.zero_()
        model[1].fc.bias.zero_()
    assert float(SkipOracle().score(model, groups, data)["1"]) == pytest.approx(0.0, abs=1e-6)


def test_registry_estimators_are_lifted_to_blocks() -> None:
    torch.manual_seed(0)
    net = Net()
    groups = _groups(net, torch.randn(1, 1, 4, 4))
    magnitude = block_estimator("magnitude")
    assert isinstance(magnitude, Magnitude)
    scores = magnitude.score(net, groups, None)
    expected = sum(float(p.detach().abs().sum()) for p in net.zero.parameters())
    assert float(scores["zero"]) == pytest.approx(expected, rel=1e-6)
    mean = block_estimator("magnitude", reduction="mean").score(net, groups, None)
    count = sum(p.numel() for p in net.zero.parameters())
    assert float(mean["zero"]) == pytest.approx(expected / count, rel=1e-6)
    taylor = block_estimator("taylor").score(net, groups, _data((1, 4, 4)))
    assert all(s.shape == (1,) and bool(torch.isfinite(s).all()) for s in taylor.values())


def test_block_estimator_names_and_errors() -> None:
    assert isinstance(block_estimator("angular"), Angular)
    assert isinstance(block_estimator("oracle"), SkipOracle)  # not the weight-zeroing oracle
    with pytest.raises(ConfigError, match="scores output channels"):
        block_estimator("activation")
    with pytest.raises(ConfigError, match="per must be"):
        block_estimator("angular", per="pixel")
    with pytest.raises(ConfigError, match="estimator 'oracle' has no option 'sample'"):
        block_estimator("oracle", sample=3)
    channels = Group("zero", "zero", (Member("zero.conv.weight", AxisView((2, 2, 3, 3))),))
    with pytest.raises(ConfigError, match="has 2 units"):
        Angular().score(Net(), [channels], _data((1, 4, 4)))
