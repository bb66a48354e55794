"""The examples run and print what they promise."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("quickstart.py", ["2:4 pattern", "accuracy", "effective MACs"]),
        ("grade_estimators.py", ["taylor", "random", "spearman"]),
        ("layer_pruning.py --quick", ["| angular | 2 |", "| oracle | 1 |", "removable blocks"]),
        (
            "training_time_pruning.py --quick",
            ["| gradual to 90% | 90.0% |", "| + BN recalibration | 35,629 |", "distillation"],
        ),
        ("search_allocation.py --quick", ["replayed best trial", "MACs kept"]),
        ("ddp_finetune.py", ["masked sparsity after fine-tuning: 90.0%", "fine-tuned"]),
    ],
)
def test_example_runs(command: str, expected: list[str], tmp_path: Path) -> None:
    script, *args = command.split()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for text in expected:
        assert text in result.stdout
