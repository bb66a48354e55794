"""Every training benchmark's ``--quick`` mode, on its real config and real data (MNIST,
Fashion-MNIST from ``../shared/data``): the harness that produced the documented numbers still
runs end to end and writes a results table. Dense models are trained into a temporary cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

QUICK = [
    ("training_channels.py", "training_channels.yaml"),
    ("training_lottery.py", "training_lottery.yaml"),
    ("bn_recalibration.py", "bn_recalibration.yaml"),
]


@pytest.mark.parametrize(("script", "config"), QUICK, ids=[c for _, c in QUICK])
def test_quick_mode_runs_on_the_real_config(script: str, config: str, tmp_path: Path) -> None:
    settings = yaml.safe_load((BENCH / "configs" / config).read_text())
    settings["cache_dir"] = str(tmp_path / "dense")
    path = tmp_path / config
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(BENCH / script), str(path), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train_limit"] == settings["quick"]["train_limit"]
    assert (out / "results.md").read_text().count("\n|") >= 2
