"""DDP fine-tuning on two Gloo processes takes the steps one process takes on the global batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dist_workers as workers
import pytest
import torch
from torch.utils.data import DataLoader

from prunekit.distributed import DDPConfig, finetune_ddp, run_processes, shard_range
from prunekit.errors import ConfigError, DataError
from prunekit.masks import apply_masks
from prunekit.recovery import load_checkpoint
from prunekit.train import train

PLAIN = {"batch_size": 32, "lr": 0.1, "shuffle": False}
MASKED = {"batch_size": 32, "lr": 0.05, "momentum": 0.9, "epochs": 2, "seed": 3}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ddp") / "model.pt"


@pytest.fixture(scope="module")
def two_ranks(checkpoint: Path) -> list[list[dict[str, Any]]]:
    calls = [
        ("finetune_digits", (PLAIN, False)),
        ("finetune_digits", ({**MASKED, "save_path": str(checkpoint)}, True)),
    ]
    return run_processes(workers.many, 2, calls)


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5)


def test_two_ranks_take_the_full_batch_sgd_steps(two_ranks: list[list[dict[str, Any]]]) -> None:
    model = workers.digits_mlp()
    loader = DataLoader(workers.digits(), batch_size=32, shuffle=False)
    stats = train(model, loader, optimizer="sgd", lr=0.1, momentum=0.0, progress=False)
    assert two_ranks[0][0]["steps"] == stats.steps == 8  # 256 samples / 32
    _close(two_ranks[0][0]["state"], model.state_dict())
    torch.testing.assert_close(
        torch.tensor(two_ranks[0][0]["losses"]), torch.tensor(stats.losses), rtol=0, atol=1e-5
    )


@pytest.mark.usefixtures("solo_group")
def test_two_ranks_match_one_rank_with_shuffling_momentum_and_masks(
    two_ranks: list[list[dict[str, Any]]],
) -> None:
    one = workers.finetune_digits(MASKED, True)
    for rank in two_ranks:
        got = rank[1]
        assert got["steps"] == one["steps"] == 16  # 2 epochs of 8 global batches
        _close(got["state"], one["state"])
        mask = got["masks"]["0.weight"]
        assert int(mask.sum()) == 32 * 32  # every other weight of the 32 x 64 layer
        original = got["state"]["0.parametrizations.weight.original"]
        assert int(original[mask == 0].count_nonzero()) == 0
    for name, value in two_ranks[0][1]["state"].items():
        assert torch.equal(value, two_ranks[1][1]["state"][name]), name


def test_rank_zero_saved_the_checkpoint(
    two_ranks: list[list[dict[str, Any]]], checkpoint: Path
) -> None:
    saved = load_checkpoint(checkpoint)
    assert saved["steps"] == 16 and saved["world_size"] == 2
    for name, value in two_ranks[0][1]["state"].items():
        assert torch.equal(saved["model"][name], value), name


def test_shards_are_contiguous_and_cover_everything() -> None:
    assert [shard_range(5, r, 2) for r in range(2)] == [range(0, 3), range(3, 5)]
    assert [shard_range(2, r, 3) for r in range(3)] == [range(0, 1), range(1, 2), range(2, 2)]
    with pytest.raises(ConfigError, match="rank 2"):
        shard_range(4, 2, 2)


def test_needs_a_process_group() -> None:
    with pytest.raises(ConfigError, match="finetune_ddp runs inside"):
        finetune_ddp(workers.digits_mlp(), workers.digits())


@pytest.mark.usefixtures("solo_group")
def test_refuses_a_data_set_smaller_than_one_batch() -> None:
    with pytest.raises(DataError, match="16 samples, fewer than one global batch of 32"):
        finetune_ddp(workers.digits_mlp(), workers.digits(16), DDPConfig(batch_size=32))


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        DDPConfig(batch_size=0)


@pytest.mark.usefixtures("solo_group")
def test_masked_originals_are_zeroed_before_training() -> None:
    model = workers.digits_mlp()
    keep = torch.ones(10, 32)
    keep[:, 0] = 0
    apply_masks(model, {"2.weight": keep})
    result = finetune_ddp(model, workers.digits(64), DDPConfig(batch_size=32, max_steps=1))
    original = result.model[2].parametrizations.weight.original
    assert result.steps == 1 and original[:, 0].abs().sum() == 0
