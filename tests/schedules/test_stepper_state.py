"""A Stepper's saved state records its schedule and config: a state saved with one config is
refused by a Stepper with another, with the changed field named, also through train_resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import masks_of
from prunekit.recovery import load_checkpoint, save_checkpoint, train_resumable
from prunekit.schedules import Iterative, OneShot, Stepper


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 6, generator=g), torch.arange(4) % 3) for _ in range(3)]


def _saved(config: dict[str, Any]) -> dict[str, Any]:
    stepper = Stepper(OneShot(0.5, step=1), config)
    stepper(1, _mlp())
    return stepper.state_dict()


def test_state_with_the_same_settings_resumes(tmp_path: Path) -> None:
    state = _saved({"granularity": "channel"})
    save_checkpoint(tmp_path / "s.pt", state)  # plain data: loads with weights_only=True
    again = Stepper(OneShot(0.5, step=1), {"granularity": "channel"})
    again.load_state_dict(load_checkpoint(tmp_path / "s.pt"))
    assert (again.applied, again.history, again.done) == (0.5, [(1, 0.5)], True)
    assert again(2, _mlp()) is None  # nothing left to prune


@pytest.mark.parametrize(
    ("schedule", "config", "field"),
    [
        (OneShot(0.5, step=1), {"granularity": "channel", "scope": "global"}, "config.scope"),
        (OneShot(0.5, step=1), {"granularity": "element"}, "config.granularity"),
        (OneShot(0.5, step=1), {"granularity": "channel", "n_batches": 2}, "config.n_batches"),
        (OneShot(0.6, step=1), {"granularity": "channel"}, "schedule.final_sparsity: 0.5 -> 0.6"),
    ],
)
def test_state_saved_with_other_settings_is_refused(
    schedule: OneShot, config: dict[str, Any], field: str
) -> None:
    state = _saved({"granularity": "channel"})
    other = Stepper(schedule, config)
    with pytest.raises(ConfigError, match=r"^Stepper\.load_state_dict: .*other settings") as err:
        other.load_state_dict(state)
    assert field in str(err.value)
    assert other.applied == 0.0  # nothing was loaded


def test_state_without_settings_is_refused() -> None:
    with pytest.raises(ConfigError, match="records no settings"):
        Stepper(OneShot(0.5)).load_state_dict({"applied": 0.5, "history": [[0, 0.5]]})


def _job(tmp_path: Path, config: dict[str, Any]) -> Stepper:
    stepper = Stepper(Iterative(0.5, rounds=2, steps_per_round=2), config)
    train_resumable(
        _mlp(), _data(), steps=4, every=2, checkpoint_dir=tmp_path, on_step=stepper,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
    )  # fmt: skip
    return stepper


def test_resumable_training_refuses_a_stepper_with_another_config(tmp_path: Path) -> None:
    first = _job(tmp_path, {"granularity": "channel", "scope": "layer"})
    # steps count from 1: round 1 (1 - 0.5 ** (1/2) of the rows) at step 1, round 2 at step 2
    assert first.history == [(1, 1 - 0.5**0.5), (2, 0.5)]
    # refused by the checkpoint's record of the job, before any state is restored
    with pytest.raises(ConfigError, match=r"on_step\.config\.scope: 'layer' -> 'global'"):
        _job(tmp_path, {"granularity": "channel", "scope": "global"})
    assert _job(tmp_path, {"granularity": "channel", "scope": "layer"}).applied == 0.5


def test_masks_follow_the_config() -> None:
    model = _mlp()
    Stepper(OneShot(0.5, step=1), {"granularity": "channel"})(1, model)
    masks = masks_of(model)
    # per layer (auto scope for channels): 4 of 8 rows, then round(0.5 * 3) = 2 of 3 rows
    assert [int((masks[f"{i}.weight"].sum(dim=1) == 0).sum()) for i in (0, 2)] == [4, 2]
