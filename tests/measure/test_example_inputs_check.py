"""Example inputs that cannot be the model's inputs get one line naming expected vs given."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.errors import DataError
from prunekit.measure.inputs import check_example_inputs


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(64, 2))  # 6x6 -> 4x4x4


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.randn(2, 4, 6, 6), r"module '0' \(Conv2d\) expects \(N, 3, H, W\) float32, "
         r"given Tensor\(2, 4, 6, 6\) float32"),
        (torch.randn(2, 3, 6, 6, dtype=torch.float64), r"expects \(N, 3, H, W\) float32, "
         r"given Tensor\(2, 3, 6, 6\) float64"),
        (torch.randn(2, 3, 7, 7), r"module '2' \(Linear\) expects \(\.\.\., 64\) float32, "
         r"given Tensor\(2, 3, 7, 7\)"),
        (torch.randn(2, 3, 6, 6, device="meta"), r"on \['meta'\], the model on cpu"),
    ],
)  # fmt: skip
def test_bad_inputs_name_expected_and_given(x: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        check_example_inputs(_net(), x)
    assert "\n" not in str(info.value)


def test_good_inputs_and_ids_pass_and_float_ids_are_named() -> None:
    check_example_inputs(_net(), torch.randn(2, 3, 6, 6))
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    check_example_inputs(embed, {"input": torch.randint(0, 10, (1, 5))})
    with pytest.raises(DataError, match=r"expects integer ids in \[0, 10\), given Tensor"):
        check_example_inputs(embed, torch.randn(1, 5))


def test_a_model_that_reads_values_is_not_refused() -> None:
    class ReadsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * float(x.abs().max().item())

    check_example_inputs(ReadsValues(), torch.randn(1, 3))  # meta cannot tell: no error
    with pytest.raises(DataError, match="example_inputs is None"):
        check_example_inputs(ReadsValues(), None)  # type: ignore[arg-type]
