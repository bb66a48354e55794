"""One way to run a benchmark harness in a subprocess on a config: ``run_bench`` fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

RunBench = Callable[..., tuple[dict[str, Any], Path]]


def run_script(
    script: str, config: Mapping[str, Any], folder: Path, *args: str, timeout: int = 300
) -> tuple[dict[str, Any], Path]:
    """``python benchmarks/SCRIPT CONFIG --out OUT ARGS`` on ``config`` written as YAML under
    ``folder`` (one thread, a bare environment); fails the test with its stderr if it fails.
    Returns the run's ``results.json`` and its output folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(dict(config)))
    out = folder / "out"
    result = subprocess.run(
        [sys.executable, str(BENCH / script), str(path), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), out


@pytest.fixture
def run_bench() -> RunBench:
    return run_script
