"""The BatchNorm-recalibration harness runs end to end on a tiny real config (digits, small VGG
at 8x8): every (sparsity, scope, batches) row is measured, the un-recalibrated row once."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bn_recalibration.py"

CONFIG = {
    "dataset": "digits",
    "batch_size": 64,
    "threads": 1,
    "model": {"name": "small-vgg", "kwargs": {"in_size": 8, "width": 8}, "epochs": 2},
    "sparsities": [0.5],
    "scopes": ["layer", "global"],
    "batches": [0, 2],
    "seeds": [0, 1],
}


def test_rows_for_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "cache_dir": str(tmp_path / "dense")}))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert [(r["scope"], r["batches"]) for r in rows] == [
        ("layer", 0),
        ("layer", 2),
        ("global", 0),
        ("global", 2),
    ]
    for row in rows:
        assert 0.0 <= row["min"] <= row["median"] <= row["max"] <= 100.0
    assert all(r["min"] == r["max"] for r in rows if r["batches"] == 0)
    assert "recalibration batches" in (out / "results.md").read_text()
