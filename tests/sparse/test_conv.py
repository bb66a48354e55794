"""Sparse 2-D convolutions: exact against F.conv2d, chosen by sparsify only when measured faster,
and convolutions without a sparse kernel reported with the reason."""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.masks.parametrize import apply_masks
from prunekit.sparse import SparseConv2d, densify, sparsify

C = TypeVar("C", nn.Conv1d, nn.Conv2d)


def _sparse_conv(conv: C, sparsity: float = 0.9, seed: int = 0) -> C:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.mul_((torch.rand(conv.weight.shape, generator=gen) >= sparsity).float())
    return conv


def test_a_hand_worked_one_by_one_convolution() -> None:
    conv = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1))
        conv.bias.copy_(torch.tensor([1.0, 0.0]))  # type: ignore[union-attr]
    x = torch.arange(8.0).reshape(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    out = SparseConv2d(conv)(x)
    assert torch.equal(out[0, 0], torch.tensor([[1.0, 3.0], [5.0, 7.0]]))  # 2 x + 1
    assert torch.equal(out[0, 1], -torch.tensor([[4.0, 5.0], [6.0, 7.0]]))


@pytest.mark.parametrize(
    "settings",
    [
        {"kernel_size": 1},
        {"kernel_size": 1, "stride": 2},
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
        {"kernel_size": (3, 5), "padding": (2, 1), "dilation": 2},
    ],
    ids=["1x1", "1x1-stride2", "3x3-pad1", "3x3-stride2-nobias", "3x5-dilated"],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_equal_the_dense_convolution(settings: dict[str, object], batch: int) -> None:
    torch.manual_seed(0)
    conv = _sparse_conv(nn.Conv2d(8, 6, **settings))  # type: ignore[arg-type]
    x = torch.randn(batch, 8, 9, 11)
    expected = conv(x)
    for layout, blocksize in (("csr", None), ("bsr", (2, 2))):
        out = SparseConv2d(conv, layout, blocksize)(x)
        assert out.shape == expected.shape
        assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(SparseConv2d(conv).to_conv().weight, conv.weight)


def test_unsupported_convolutions_are_refused() -> None:
    with pytest.raises(ConfigError, match="grouped convolution"):
        SparseConv2d(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ConfigError, match="padding='same'"):
        SparseConv2d(nn.Conv2d(4, 4, 3, padding="same"))
    with pytest.raises(ConfigError, match="padding_mode='reflect'"):
        SparseConv2d(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))


def _small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.Identity(),
        nn.Conv2d(32, 16, 3, stride=2, padding=1),
    )
    gen = torch.Generator().manual_seed(1)
    masks = {
        f"{i}.weight": (torch.rand(model[i].weight.shape, generator=gen) >= 0.9).float()  # type: ignore[arg-type]
        for i in (0, 2, 4, 6)
    }
    apply_masks(model, masks)
    return model


def _close(a: Tensor, b: Tensor) -> bool:
    return bool(((a - b).abs() <= 1e-5 * (1 + b.abs())).all())


def test_sparsify_replaces_convolutions_and_keeps_the_outputs() -> None:
    model = _small_cnn()
    x = torch.randn(2, 3, 12, 12)
    expected = model(x).detach()
    report = sparsify(model, x, min_speedup=1e-9, repeats=2, warmup=1)  # every timed one wins
    chosen = {d.name: d.chosen for d in report.layers}
    assert chosen["4"] == "dense"
    assert all(chosen[n] in ("csr", "bsr2x2", "bsr4x4") for n in ("0", "2", "6"))
    assert isinstance(model[2], SparseConv2d)
    assert "grouped convolution (groups=32)" in report.layers[2].note
    assert _close(model(x), expected)
    assert report.max_abs_diff <= 1e-5
    assert sorted(densify(model)) == ["0", "2", "6"]
    assert isinstance(model[2], nn.Conv2d)
    assert _close(model(x), expected)


def test_a_convolution_that_does_not_win_stays_dense() -> None:
    model = _small_cnn()
    report = sparsify(model, torch.randn(1, 3, 12, 12), min_speedup=1e9, repeats=2, warmup=1)
    conv = report.layers[0]
    assert conv.chosen == "dense"
    assert conv.note.startswith("fastest sparse (")
    assert "csr" in conv.kernels_ms
    assert isinstance(model[0], nn.Conv2d)


def test_conv1d_is_reported_without_a_kernel() -> None:
    model = _sparse_conv(nn.Conv1d(4, 4, 3))
    report = sparsify(model, torch.randn(1, 4, 10), repeats=2)
    assert report.layers[0].note == "Conv1d: no sparse kernel, kept dense"
