"""Dense and effective MACs, checked against hand-worked counts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import DataError
from prunekit.masks import apply_masks
from prunekit.measure import count_effective_macs, count_macs, effective_macs, layer_macs
from prunekit.measure.macs import _own_macs


def _half_mask(rows: int, cols: int) -> Tensor:
    mask = torch.ones(rows, cols)
    mask[:, : cols // 2] = 0.0
    return mask


class _Scores(nn.Module):
    """A Linear followed by a parameter-free matrix product (like attention scores)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        return h @ h.transpose(-1, -2)


def test_linear_784_300_batch_1() -> None:
    count = count_macs(nn.Sequential(nn.Linear(784, 300)), torch.randn(1, 784))
    assert count.total == 784 * 300 == 235_200
    assert dict(count.by_module) == {"": 235_200, "0": 235_200}
    assert dict(count.by_op) == {"aten.addmm": 235_200}


def test_conv2d_with_padding_and_batch() -> None:
    # out 2 x 8 x 8 x 8 positions, each (3 in-channels x 3 x 3) multiply-adds
    count = count_macs(nn.Conv2d(3, 8, 3, padding=1), torch.randn(2, 3, 8, 8))
    assert count.total == 2 * 8 * 8 * 8 * 27 == 27_648


def test_grouped_conv2d() -> None:
    # no padding: 5x5 -> 3x3; each of 8 filters sees 4 / 2 groups = 2 channels x 3 x 3
    count = count_macs(nn.Conv2d(4, 8, 3, groups=2), torch.randn(1, 4, 5, 5))
    assert count.total == 8 * 3 * 3 * 2 * 9 == 1_296


def test_norm_activation_and_pooling_count_nothing() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
    )
    count = count_macs(model, torch.randn(2, 3, 8, 8))
    assert count.total == 27_648
    assert dict(count.by_module) == {"": 27_648, "0": 27_648}


def test_half_masked_linear_has_half_the_macs() -> None:
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    apply_masks(model, {"0.weight": _half_mask(300, 784)})
    count = count_macs(model, torch.randn(1, 784))
    assert count.total == 235_200 + 3_000
    assert effective_macs(model, count) == 117_600 + 3_000


def test_zero_weights_without_masks_reduce_effective_macs() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight[:6] = 0.0  # 6 of 8 filters: 75% of the weight
    model = nn.Sequential(conv)
    assert count_effective_macs(model, torch.randn(2, 3, 8, 8)) == 27_648 // 4


def test_non_prunable_work_is_kept() -> None:
    model = _Scores()
    apply_masks(model, {"fc.weight": _half_mask(4, 4)})
    count = count_macs(model, torch.randn(1, 3, 4))
    assert count.total == 3 * 4 * 4 + 3 * 3 * 4  # Linear on 3 tokens + 3x3 scores of width 4
    assert layer_macs(model, count) == {"fc": 48}
    assert effective_macs(model, count) == 24 + 36


def test_shared_layer_called_twice() -> None:
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, layer)
    apply_masks(model, {"0.weight": _half_mask(4, 4)})
    count = count_macs(model, torch.randn(1, 4))
    assert count.total == 32
    assert layer_macs(model, count) == {"0": 32}
    assert effective_macs(model, count) == 16


def test_nested_layers_keep_only_their_own_work() -> None:
    inclusive = {"a": 100, "a.b": 30, "a.b.c": 10, "d": 5}
    assert _own_macs(inclusive) == {"a": 70, "a.b": 20, "a.b.c": 10, "d": 5}


def test_counting_does_not_train_the_model() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).train()
    count_macs(model, torch.randn(4, 3) + 10.0)
    assert model.training and model[1].training
    assert torch.equal(model.get_buffer("1.running_mean"), torch.zeros(3))


def test_bad_inputs_name_the_failing_module() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2))
    with pytest.raises(DataError, match=r"counting MACs: .*Tensor\(1, 4\).* in module '1'"):
        count_macs(model, torch.randn(1, 4))


def test_multihead_attention_macs_are_counted_in_eval_mode() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    x = torch.randn(1, 5, 8)
    # in/out projections 4 * 5 * 8 * 8 = 1280, q @ k^T and attn @ v 2 * 5 * 5 * 8 = 400
    assert count_macs(Wrap(), x).total == 1680
    assert torch.backends.mha.get_fastpath_enabled()


def test_cpu_scaled_dot_product_attention_is_counted() -> None:
    class Attend(nn.Module):
        def forward(self, q: Tensor) -> Tensor:
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    # batch 1, 2 heads, 5 positions, dim 4: scores 2*5*5*4 = 200, values 200
    assert count_macs(Attend(), torch.randn(1, 2, 5, 4)).total == 400
