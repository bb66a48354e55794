"""Input statistics: hand-worked sums, the float32 Hessian, and sharing between layers that
read the same input tensor."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import DataError
from prunekit.estimators.stats import InputStats, record_inputs

X = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
# X^T X = [[1 + 9, 2], [2, 4]]; H = 2 X^T X / 2 rows = [[10, 2], [2, 4]]


class Fork(nn.Module):
    """``a`` and ``b`` read one tensor, ``c`` a copy of it, ``d`` the output of ``a``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (nn.Linear(2, 2, bias=False) for _ in range(3))
        self.d = nn.Linear(2, 2, bias=False)
        self.modify = False

    def forward(self, x: Tensor) -> Tensor:
        h = x * 1.0
        y = self.a(h)
        if self.modify:
            h.mul_(2.0)  # in place: b no longer reads what a read
        return y + self.b(h) + self.c(h.clone()) + self.d(y)


def test_sums_and_hessian_hand_worked() -> None:
    stats = InputStats(2, hessian_wanted=True)
    stats.add(X)
    assert stats.rows == 2
    assert torch.equal(stats.sq_norms, torch.tensor([10.0, 4.0], dtype=torch.float64))
    assert torch.equal(stats.hessian(), torch.tensor([[10.0, 2.0], [2.0, 4.0]]))
    assert torch.equal(stats.column_norms(), torch.tensor([10.0, 4.0]).sqrt())


def test_finish_keeps_the_float32_hessian_and_frees_the_sum() -> None:
    stats = InputStats(2, hessian_wanted=True)
    stats.add(X)
    before = stats.hessian()
    stats.finish_hessian()
    assert stats.gram is None
    assert stats.hessian() is stats.hessian()  # one tensor, not a new one per call
    assert torch.equal(stats.hessian(), before)
    with pytest.raises(DataError, match="finished"):
        stats.add(X)


def test_chunked_hessian_has_the_bits_of_the_one_go_formula() -> None:
    torch.manual_seed(0)
    stats = InputStats(600, hessian_wanted=True)  # more rows than one chunk of 256
    stats.add(torch.randn(3, 700, 600))
    assert stats.gram is not None
    expected = (2.0 * stats.gram / stats.rows).float()
    stats.finish_hessian()
    assert torch.equal(stats.hessian(), expected)


def test_layers_reading_one_tensor_share_one_statistic() -> None:
    model = Fork()
    layers = {n: getattr(model, n) for n in "abcd"}
    with record_inputs(layers, hessian=True, share=True) as shared:
        for _ in range(2):
            model(X)
    with record_inputs(layers, hessian=True) as separate:
        for _ in range(2):
            model(X)
    assert shared["a"] is shared["b"]
    assert shared["c"] is not shared["a"] and shared["d"] is not shared["a"]
    assert len({id(s) for s in separate.values()}) == 4
    for name in "abcd":  # the same sums as recording every layer on its own
        assert shared[name].rows == separate[name].rows == 4
        assert torch.equal(shared[name].hessian(), separate[name].hessian())
    assert torch.equal(shared["b"].hessian(), torch.tensor([[10.0, 2.0], [2.0, 4.0]]))


def test_an_input_modified_in_place_is_not_shared() -> None:
    model = Fork()
    model.modify = True
    with record_inputs({"a": model.a, "b": model.b}, share=True) as stats:
        model(X)
    assert stats["a"] is not stats["b"]
    assert torch.equal(stats["b"].sq_norms, 4 * stats["a"].sq_norms)


def test_sharing_that_changes_after_the_first_call_is_refused() -> None:
    model = Fork()
    with record_inputs({"a": model.a, "b": model.b}, share=True):
        model(X)
        model.modify = True
        with pytest.raises(DataError, match="'b' read the same input as 'a'"):
            model(X)
