"""Every training benchmark's ``--quick`` mode, on its real config and real data (MNIST,
Fashion-MNIST from ``../shared/data``): the harness that produced the documented numbers still
runs end to end and writes a results table. Dense models are trained into a temporary cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
RunBench = Callable[..., tuple[dict[str, Any], Path]]  # the run_bench fixture (conftest.py)

QUICK = [
    ("training_channels.py", "training_channels.yaml"),
    ("training_lottery.py", "training_lottery.yaml"),
    ("bn_recalibration.py", "bn_recalibration.yaml"),
    ("search_ceiling.py", "search_ceiling.yaml"),
]


@pytest.mark.parametrize(("script", "config"), QUICK, ids=[c for _, c in QUICK])
def test_quick_mode_runs_on_the_real_config(
    run_bench: RunBench, script: str, config: str, tmp_path: Path
) -> None:
    settings = yaml.safe_load((BENCH / "configs" / config).read_text())
    settings["cache_dir"] = str(tmp_path / "dense")
    results, out = run_bench(script, settings, tmp_path, "--quick", timeout=600)
    assert results["config"]["train_limit"] == settings["quick"]["train_limit"]
    assert (out / "results.md").read_text().count("\n|") >= 2


@pytest.mark.slow
def test_search_allocation_quick_mode_runs_every_arm(run_bench: RunBench, tmp_path: Path) -> None:
    """Every arm of the allocation benchmark's real config (searchers whose trials train on
    more batches included) on its quick data: each writes a row."""
    settings = yaml.safe_load((BENCH / "configs" / "search_allocation.yaml").read_text())
    settings["cache_dir"] = str(tmp_path / "dense")
    results, _ = run_bench("search_allocation.py", settings, tmp_path, "--quick", timeout=900)
    assert {r["arm"] for r in results["rows"]} == {a["name"] for a in settings["arms"]}
