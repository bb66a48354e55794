"""Sparse Linear modules: hand-worked outputs, layouts, the 2:4 check, the CUDA 2:4 path."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.errors import ConfigError
from prunekit.sparse import SemiStructuredLinear, SparseLinear, is_two_of_four
from prunekit.sparse.timing import interleaved_medians

WEIGHT = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, -1.0]])
BIAS = torch.tensor([0.5, -0.5])


def close(a: Tensor, b: Tensor, tol: float = 1e-5) -> bool:
    """Equal up to floating-point rounding: ``|a - b| <= tol * (1 + |b|)`` everywhere."""
    return a.shape == b.shape and bool(((a.float() - b.float()).abs() <= tol * (1 + b.abs())).all())


def test_csr_linear_by_hand() -> None:
    layer = SparseLinear(WEIGHT, BIAS)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # row 0: 2*2 + 0.5 = 4.5; row 1: 1*1 - 1*3 - 0.5 = -2.5
    assert layer(x).tolist() == [[4.5, -2.5]]
    assert layer.weight.layout == torch.sparse_csr
    assert layer.weight.values().tolist() == [2.0, 1.0, -1.0]


def test_inputs_of_any_leading_shape_and_no_bias() -> None:
    layer = SparseLinear(WEIGHT, None)
    x = torch.randn(4, 5, 3)
    out = layer(x)
    assert out.shape == (4, 5, 2)
    assert close(out, F.linear(x, WEIGHT))


def test_bsr_layout_and_back_to_dense() -> None:
    weight = torch.zeros(8, 8)
    weight[:4, 4:] = torch.arange(16.0).reshape(4, 4)
    layer = SparseLinear(weight, torch.ones(8), "bsr", (4, 4))
    assert layer.weight.layout == torch.sparse_bsr
    assert layer.weight.values().shape == (1, 4, 4)  # one stored tile
    x = torch.randn(3, 8)
    assert close(layer(x), F.linear(x, weight, torch.ones(8)))
    dense = layer.to_linear()
    assert isinstance(dense, nn.Linear)
    assert torch.equal(dense.weight, weight) and torch.equal(dense.bias, torch.ones(8))


def test_bad_layouts_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"blocksize \(4, 4\) does not tile the weight \(2, 3\)"):
        SparseLinear(WEIGHT, None, "bsr", (4, 4))
    with pytest.raises(ConfigError, match="layout must be one of"):
        SparseLinear(WEIGHT, None, "coo")
    with pytest.raises(ConfigError, match="need a CUDA weight"):
        SemiStructuredLinear(torch.zeros(64, 64), None)


def test_two_of_four_check() -> None:
    assert is_two_of_four(torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3]]))
    assert not is_two_of_four(torch.tensor([[1.0, 1, 2, 0, 0, 0, 0, 3]]))  # 3 in the first 4
    assert not is_two_of_four(torch.zeros(2, 6))  # 6 inputs are not groups of 4


def test_interleaved_medians_rank_a_slow_call_last() -> None:
    import time

    times = interleaved_medians(
        {"sleep": lambda: time.sleep(0.004), "noop": lambda: None}, warmup=1, repeats=5
    )
    assert list(times) == ["sleep", "noop"]
    assert times["sleep"] >= 4.0 > times["noop"]


@pytest.mark.gpu
def test_semi_structured_linear_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = torch.Generator().manual_seed(0)
    order = torch.rand(128, 32, 4, generator=g).argsort(-1)
    keep = torch.zeros(128, 32, 4, dtype=torch.bool).scatter(-1, order[..., :2], True)
    weight = torch.where(keep.reshape(128, 128), torch.randn(128, 128, generator=g), 0.0)
    weight = weight.half().cuda()
    layer = SemiStructuredLinear(weight, None)
    x = torch.randn(64, 128, device="cuda", dtype=torch.float16)
    assert close(layer(x), F.linear(x, weight), 1e-2)


def test_paired_speedup_is_the_median_of_per_round_ratios() -> None:
    from prunekit.sparse.timing import paired_speedup

    # per-round ratios 4/2 = 2, 8/2 = 4, 40/40 = 1: the median is 2
    assert paired_speedup([4.0, 8.0, 40.0], [2.0, 2.0, 40.0]) == 2.0
