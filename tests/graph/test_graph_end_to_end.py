"""Every hand-built net: trace, remove about half of every group, and prove surgery == masking."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.core.groups import Group, Selection
from prunekit.errors import ConfigError, UnsupportedLayerError
from prunekit.graph import build_structural_groups
from prunekit.surgery import Plan, apply_surgery, rebuild, verify


def half_selection(groups: list[Group], seed: int) -> Selection:
    gen = torch.Generator().manual_seed(seed)
    selection = {}
    for g in groups:
        keep = torch.ones(g.n_units, dtype=torch.bool)
        keep[torch.randperm(g.n_units, generator=gen)[: g.n_units // 2]] = False
        selection[g.name] = keep
    return selection


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("seed", [0, 1])
def test_surgery_equals_masking(net_name: str, seed: int, nets: dict) -> None:
    cls, shape = nets[net_name]
    torch.manual_seed(seed)
    model = cls()
    x = torch.randn(shape)
    before = copy.deepcopy(model.state_dict())
    groups = build_structural_groups(model, x)
    assert groups, f"{net_name}: no prunable group found"
    selection = half_selection(groups, seed)
    pruned, plan = apply_surgery(model, groups, selection)
    report = verify(model, pruned, groups, selection, x)
    assert report.max_abs_diff <= report.tolerance
    assert set(report.verified) | set(report.unverified) == set(plan.groups)
    assert n_params(pruned) < n_params(model)
    # the input model is untouched
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    # the plan is JSON and rebuilds the same shapes from the original
    plan2 = Plan.from_json(json.dumps(json.loads(plan.to_json())))
    rebuilt = rebuild(model, plan2)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in pruned.state_dict().items()
    }
    for k, v in rebuilt.state_dict().items():
        assert torch.equal(v, pruned.state_dict()[k]), k
    # the pruned model still trains: a backward pass reaches every parameter
    pruned.train()
    pruned(x).float().pow(2).mean().backward()
    assert all(p.grad is not None for p in pruned.parameters())


def test_trace_restores_training_flags_and_values(nets: dict) -> None:
    model = nets["conv_bn_chain"][0]()
    model.train()
    stats = model.bn1.running_mean.clone()
    build_structural_groups(model, torch.randn(2, 3, 4, 4))
    assert model.training and model.bn1.training
    assert torch.equal(model.bn1.running_mean, stats)


class FFTNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.mix = nn.Identity()
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.out(torch.fft.fft(y, dim=1).real)


def test_unknown_op_is_refused_with_its_name_and_module() -> None:
    with pytest.raises(UnsupportedLayerError) as err:
        build_structural_groups(FFTNet(), torch.randn(1, 3, 4, 4))
    message = str(err.value)
    assert "aten._fft" in message and "OP_RULES.register" in message


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.fft.fft(self.conv(x), dim=1).real


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.block = Block()
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.relu(self.block(self.stem(x))))


def test_unknown_op_names_the_module_path() -> None:
    with pytest.raises(UnsupportedLayerError, match=r"called in module 'block'"):
        build_structural_groups(Wrapped(), torch.randn(1, 3, 4, 4))


def test_ignoring_the_module_makes_its_unknown_op_opaque() -> None:
    groups = build_structural_groups(Wrapped(), torch.randn(1, 3, 4, 4), ignore=["block"])
    # the op's input (block.conv's output) keeps its width; the stem feeds a plain conv
    assert [g.name for g in groups] == ["stem"]
    assert {(m.tensor, m.view.dim) for m in groups[0].members} == {  # type: ignore[attr-defined]
        ("stem.weight", 0),
        ("stem.bias", 0),
        ("block.conv.weight", 1),
    }


def test_ignore_keeps_a_layers_output_width(nets: dict) -> None:
    model = nets["conv_bn_chain"][0]()
    names = [
        g.name for g in build_structural_groups(model, torch.randn(1, 3, 4, 4), ignore=["conv1"])
    ]
    assert names == ["conv2"]
    with pytest.raises(ConfigError, match="matches no module"):
        build_structural_groups(model, torch.randn(1, 3, 4, 4), ignore=["conv9"])


def test_slices_with_constant_bounds_are_fixed() -> None:
    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.out = nn.Conv2d(5, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.out(self.conv(x)[:, :5])

    assert build_structural_groups(Sliced(), torch.randn(1, 3, 2, 2)) == []


def test_mean_over_channels_is_inexact() -> None:
    class ChannelMean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 1)
            self.out = nn.Conv2d(6, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            y = self.conv(x)
            return self.out(y * torch.sigmoid(y.mean(1, keepdim=True)))

    groups = build_structural_groups(ChannelMean(), torch.randn(1, 3, 2, 2))
    assert [g.name for g in groups] == ["conv"]
    assert groups.inexact == frozenset({"conv"})
