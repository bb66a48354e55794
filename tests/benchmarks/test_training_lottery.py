"""The lottery harness: its batches are make_loader's, a replayed dense run gives the same curve
as a fresh one, and the script runs end to end on a tiny real config (digits)."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prunekit.data import load_dataset, make_loader

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import training_lottery as lottery  # noqa: E402

CONFIG = {
    "dataset": "digits",
    "batch_size": 60,
    "threads": 1,
    "seeds": [0],
    "model": {"name": "lenet-300-100", "kwargs": {"in_size": 8}},
    "epochs": 1,
    "lr": 0.0012,
    "final_sparsity": 0.75,
    "rounds": 2,
    "late_rewind_step": 5,
    "methods": ["imp-init", "imp-late", "reinit", "one-shot"],
}


def test_shuffled_batches_are_make_loaders_batches_epoch_after_epoch() -> None:
    data = load_dataset("digits", "train")
    loader = make_loader(data, 64, shuffle=True, seed=3)
    batches = lottery.ShuffledBatches(data, 64, 3)
    for _ in range(3):
        ours, theirs = list(batches), list(loader)
        assert len(ours) == len(theirs) == len(batches)
        for (x, y), (u, v) in zip(ours, theirs, strict=True):
            assert torch.equal(x, u) and torch.equal(y, v)


def test_replayed_dense_run_gives_the_same_curve_as_a_fresh_one() -> None:
    data = lottery.load_data(CONFIG)
    fresh = lottery.run_seed(CONFIG, data, lottery.DenseRuns(5), "imp-late", 0)
    shared = lottery.DenseRuns(5)
    lottery.run_seed(CONFIG, data, shared, "reinit", 0)
    assert 0 in shared.runs
    assert lottery.run_seed(CONFIG, data, shared, "imp-late", 0) == fresh


def test_lottery_script_writes_curve_and_verdicts(
    run_bench: Callable[..., tuple[dict[str, Any], Path]], tmp_path: Path
) -> None:
    results, out = run_bench("training_lottery.py", CONFIG, tmp_path)
    assert set(results["summary"]) == set(CONFIG["methods"])
    assert [round(p["weights_left"], 3) for p in results["summary"]["imp-init"]] == [1.0, 0.5, 0.25]
    dense = {points[0]["median"] for points in results["summary"].values()}
    assert len(dense) == 1  # every method starts from the same dense run
    assert {v["method"] for v in results["verdicts"]} == set(CONFIG["methods"])
    assert (out / "curve.png").stat().st_size > 0
