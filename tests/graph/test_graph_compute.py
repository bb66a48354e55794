"""Tracing on meta tensors (the default) finds exactly the groups that a real run finds."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.graph import build_structural_groups, trace


def test_meta_trace_equals_real_trace(net_name: str, nets: dict) -> None:
    cls, shape = nets[net_name]
    torch.manual_seed(0)
    model = cls()
    x = torch.randn(shape)
    meta = build_structural_groups(model, x)
    real = build_structural_groups(model, x, compute="real")
    assert meta == real
    assert meta.inexact == real.inexact


class DataDependent(nn.Module):
    """A forward that reads values (a boolean mask): it cannot run on meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.fc1(x))
        if bool((h.sum() > -1e9).item()):
            h = h * 2.0
        return self.fc2(h)


def test_a_value_dependent_forward_falls_back_to_a_real_run() -> None:
    model = DataDependent()
    groups = build_structural_groups(model, torch.randn(3, 4))
    assert [g.n_units for g in groups] == [6]
    assert groups == build_structural_groups(model, torch.randn(3, 4), compute="real")


def test_compute_is_checked() -> None:
    with pytest.raises(ConfigError, match="compute"):
        trace(nn.Linear(2, 2), torch.randn(1, 2), compute="gpu")  # type: ignore[arg-type]


def test_multihead_attention_traces_through_its_composite_path() -> None:
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True).eval()
    groups = build_structural_groups(layer, torch.randn(2, 5, 8))
    assert any(g.layer == "linear1" and g.n_units == 16 for g in groups)
    assert torch.backends.mha.get_fastpath_enabled()  # restored after tracing


class RelativeBias(nn.Module):
    """Swin-style: a bias table indexed by a buffer of positions, added per head."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(9, 2))
        self.register_buffer("index", torch.randint(0, 9, (4, 4)))
        self.fc1, self.fc2 = nn.Linear(3, 6), nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, 4, 3]
        index: Tensor = self.index  # type: ignore[assignment]
        bias = self.table[index.view(-1)].view(4, 4, 2).permute(2, 0, 1)  # [2, 4, 4]
        attn = torch.softmax(x @ x.transpose(-1, -2) + bias.sum(0), dim=-1)
        return self.fc2(torch.relu(self.fc1(attn @ x)))


def test_index_tensors_without_values_on_meta_still_map_shapes() -> None:
    model = RelativeBias()
    x = torch.randn(2, 4, 3)
    meta = build_structural_groups(model, x)
    assert meta == build_structural_groups(model, x, compute="real")
    assert [g.layer for g in meta] == ["fc1"]
