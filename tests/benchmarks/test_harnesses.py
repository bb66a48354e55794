"""The benchmark harnesses run end to end on a tiny real config (digits) and write their results."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

RunBench = Callable[..., tuple[dict[str, Any], Path]]  # the run_bench fixture (conftest.py)


def run(run_bench: RunBench, script: str, config: dict, tmp_path: Path) -> dict[str, Any]:
    """``script`` on ``config`` with scikit-learn digits and a dense cache under ``tmp_path``."""
    config = {**config, "dataset": "digits", "cache_dir": str(tmp_path / "dense")}
    results, out = run_bench(script, config, tmp_path)
    assert (out / "results.md").read_text().count("|") > 10
    return results


def test_sparsity_sweep_runs_prunekit_and_torch_side_by_side(
    run_bench: RunBench, tmp_path: Path
) -> None:
    config = {
        "model": {"name": "lenet-300-100", "kwargs": {"in_size": 8}, "epochs": 2},
        "sparsities": [0.5, 0.9],
        "finetune": {"epochs": 1, "lr": 0.001},
        "methods": [
            {"name": "magnitude", "kind": "prunekit", "estimator": "magnitude"},
            {"name": "torch", "kind": "torch"},
        ],
    }
    results = run(run_bench, "sparsity_sweep.py", config, tmp_path)
    rows = {(r["method"], r["sparsity"]): r for r in results["rows"]}
    for s in (0.5, 0.9):
        assert abs(rows[("magnitude", s)]["achieved"] - s) < 1e-3
        # same masks as torch.nn.utils.prune, so the same one-shot accuracy
        assert rows[("magnitude", s)]["one_shot"] == rows[("torch", s)]["one_shot"]


def test_grading_summarises_seeds(run_bench: RunBench, tmp_path: Path) -> None:
    config = {
        "model": {"name": "lenet-5", "kwargs": {"in_size": 8}, "epochs": 2},
        "granularity": "channel",
        "batches": 1,
        "seeds": [0, 1],
        "exclude": ["fc3"],
        "estimators": ["magnitude", "taylor", "random"],
    }
    results = run(run_bench, "grading.py", config, tmp_path)
    assert set(results["summary"]) == {"magnitude", "taylor", "random"}
    assert len(results["runs"]) == 2


VGG8 = {"name": "small-vgg", "kwargs": {"in_size": 8, "width": 8}, "epochs": 2}


def test_bn_recalibration_measures_every_setting(run_bench: RunBench, tmp_path: Path) -> None:
    """Every (model, estimator, sparsity, scope, batches) row of the BatchNorm-recalibration
    harness, the un-recalibrated row once (its seeds agree)."""
    config = {
        "batch_size": 64,
        "threads": 1,
        "models": [
            VGG8,
            {"name": "small-resnet", "kwargs": {"in_size": 8, "width": 4}, "epochs": 1},
            {**VGG8, "slimming": 0.001},
        ],
        "estimators": ["magnitude", "bn_scale"],
        "sparsities": [0.5],
        "scopes": ["layer", "global"],
        "batches": [0, 2],
        "seeds": [0, 1],
    }
    results = run(run_bench, "bn_recalibration.py", config, tmp_path)
    rows = results["rows"]
    labels = [
        "small-vgg (in_size=8, width=8)",
        "small-resnet (in_size=8, width=4)",
        "small-vgg (in_size=8, slimming=0.001, width=8)",
    ]
    assert list(results["dense_accuracy"]) == labels
    assert [(r["model"], r["estimator"], r["scope"], r["batches"]) for r in rows] == [
        (label, estimator, scope, batches)
        for label in labels
        for estimator in ("magnitude", "bn_scale")
        for scope in ("layer", "global")
        for batches in (0, 2)
    ]
    for row in rows:
        assert 0.0 <= row["min"] <= row["median"] <= row["max"] <= 100.0
    assert all(r["min"] == r["max"] for r in rows if r["batches"] == 0)
