"""The channel-pruning harness runs end to end on a tiny real config (digits, small VGG at 8x8):
one prunekit arm and one Torch-Pruning arm reach both MAC targets in one run."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "training_channels.py"
RunBench = Callable[..., tuple[dict[str, Any], Path]]  # the run_bench fixture (conftest.py)

CONFIG = {
    "dataset": "digits",
    "batch_size": 64,
    "threads": 1,
    "seeds": [0],
    "models": [{"name": "small-vgg", "kwargs": {"in_size": 8, "width": 8}, "epochs": 2}],
    "mac_targets": [2, 4],
    "tolerance_pp": {2: 0.5, 4: 1.5},
    "round_to": 1,
    "normalize": "mean",
    "score_batches": 1,
    "bn_batches": 2,
    "budget_steps": 4,
    "finetune": {"lr": 0.001},
    "distill": {"alpha": 0.7, "temperature": 4.0},
    "iterative_rounds": 2,
    "gradual": {"end_fraction": 0.5, "updates": 2},
    "tp_bisection_steps": 8,
    "arms": {
        "prunekit": {
            "estimators": ["taylor"],
            "schedules": ["one-shot"],
            "recovery": ["distill"],
        },
        "torch-pruning": {"estimators": ["magnitude"], "recovery": ["finetune"]},
    },
}


def test_prunekit_and_torch_pruning_reach_the_mac_targets(
    run_bench: RunBench, tmp_path: Path
) -> None:
    config = {**CONFIG, "cache_dir": str(tmp_path / "dense")}
    results, out = run_bench("training_channels.py", config, tmp_path, timeout=120)
    runs = results["models"]["small-vgg"]["runs"]
    arms = {(r["library"], r["estimator"], r["schedule"], r["recovery"], r["target"]) for r in runs}
    assert arms == {
        (lib, est, "one-shot", rec, target)
        for lib, est, rec in (
            ("prunekit", "taylor", "distill"),
            ("torch-pruning", "magnitude", "finetune"),
        )
        for target in (2, 4)
    }
    for run in runs:
        # at most the target MACs, and within 10% of it (channels are discrete)
        assert run["target"] <= run["macs_ratio"] <= 1.1 * run["target"], run
        assert run["params_ratio"] > 1.0
        assert 0.0 <= run["accuracy"] <= 100.0
    assert len(results["summary"]) == 4
    assert {(v["model"], v["target"]) for v in results["verdicts"]} == {
        ("small-vgg", 2),
        ("small-vgg", 4),
    }
    assert "torch-pruning" in (out / "results.md").read_text()
    assert (out / "accuracy.png").stat().st_size > 0

    # the report redraws finished runs pooled into one table (4 arm rows + 2 verdict rows;
    # an arm measured again replaces the earlier one)
    pooled = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "channels_report.py"), str(out / "results.json"),
         str(out / "results.json"), "--plot", str(tmp_path / "pooled.png"),
         "--markdown", str(tmp_path / "pooled.md")],
        capture_output=True, text=True, timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert pooled.returncode == 0, pooled.stderr[-3000:]
    assert (tmp_path / "pooled.png").stat().st_size > 0
    assert (tmp_path / "pooled.md").read_text().count("| small-vgg |") == 4 + 2


def test_workers_give_the_rows_of_one_process_in_grid_order(
    run_bench: RunBench, tmp_path: Path
) -> None:
    """Arms run in two spawned processes measure exactly what one process measures."""
    config = {
        **CONFIG,
        "cache_dir": str(tmp_path / "dense"),
        "mac_targets": [2],
        "seeds": [0, 1],
        "arms": {
            "prunekit": {
                "estimators": ["bn-scale"],
                "schedules": ["one-shot", "gradual"],
                "recovery": ["finetune"],
            }
        },
    }
    runs = {
        name: run_bench("training_channels.py", cfg, tmp_path / name, timeout=180)[0]["models"][
            "small-vgg"
        ]["runs"]
        for name, cfg in (("serial", config), ("parallel", {**config, "workers": 2}))
    }
    serial, parallel = runs["serial"], runs["parallel"]
    keys = ("schedule", "seed", "accuracy", "macs_ratio", "params_ratio")
    assert [[r[k] for k in keys] for r in parallel] == [[r[k] for k in keys] for r in serial]
    assert [(r["schedule"], r["seed"]) for r in serial] == [
        ("one-shot", 0),
        ("one-shot", 1),
        ("gradual", 0),
        ("gradual", 1),
    ]
