"""``find_ticket`` resumed with other settings refuses instead of returning the old ticket."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.methods import TicketConfig, find_ticket
from prunekit.train import StepCallback, train

DATA = [
    (torch.randn(8, 10, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 3)
    for i in range(2)
]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


def _ticket(path: Path, config: TicketConfig, calls: list[int]) -> list[float]:
    def train_round(m: nn.Module, k: int, on_step: StepCallback | None) -> None:
        calls.append(k)
        train(m, DATA, epochs=1, lr=1e-2, progress=False, on_step=on_step)

    result = find_ticket(_mlp(), train_round, config, checkpoint_dir=path)
    return [r.sparsity for r in result.rounds]


def test_finished_ticket_with_the_same_config_is_returned_without_training(tmp_path: Path) -> None:
    calls: list[int] = []
    config = TicketConfig(final_sparsity=0.75, rounds=2)
    assert _ticket(tmp_path, config, calls) == [0.0, 0.5, 0.75]
    assert _ticket(tmp_path, config, calls) == [0.0, 0.5, 0.75]
    assert calls == [0, 1, 2]  # the second call trained nothing


@pytest.mark.parametrize(
    ("changed", "field"),
    [
        (TicketConfig(final_sparsity=0.5, rounds=2), "config.final_sparsity: 0.75 -> 0.5"),
        (TicketConfig(final_sparsity=0.75, rounds=3), "config.rounds: 2 -> 3"),
        (TicketConfig(final_sparsity=0.75, rounds=2, rewind_step=1), "config.rewind_step: 0 -> 1"),
    ],
)
def test_changed_config_is_refused_naming_the_field(
    tmp_path: Path, changed: TicketConfig, field: str
) -> None:
    calls: list[int] = []
    _ticket(tmp_path, TicketConfig(final_sparsity=0.75, rounds=2), calls)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _ticket(tmp_path, changed, calls)
    assert calls == [0, 1, 2]
