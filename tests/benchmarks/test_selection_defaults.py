"""``benchmarks/selection_defaults.py --quick`` on its real config and real data (Fashion-MNIST
from ``../shared/data``): every selection strategy and the Torch-Pruning peer reach the MACs
target, and the table names every arm. The dense model is trained into a temporary cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
RunBench = Callable[..., tuple[dict[str, Any], Path]]  # the run_bench fixture (conftest.py)


def test_quick_mode_meets_the_macs_target_with_every_strategy(
    run_bench: RunBench, tmp_path: Path
) -> None:
    settings = yaml.safe_load((BENCH / "configs" / "selection_defaults.yaml").read_text())
    settings["cache_dir"] = str(tmp_path / "dense")
    results, out = run_bench("selection_defaults.py", settings, tmp_path, "--quick", timeout=300)
    quick = settings["quick"]
    runs = results["runs"]
    assert {r["strategy"] for r in runs} == set(quick["strategies"])
    assert len(runs) == len(quick["strategies"]) * len(quick["estimators"])
    for row in runs:
        assert row["macs_ratio"] >= row["target"]  # at most dense MACs / target
        assert row["floor"] == settings["min_keep_fraction"]
        assert 0.0 <= row["oneshot_accuracy"] <= 100.0 and 0.0 <= row["accuracy"] <= 100.0
    table = (out / "results.md").read_text()
    assert table.count("\n|") >= 2 + len(runs)
    assert all(name in table for name in quick["strategies"])
