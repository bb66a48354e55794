import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch

from prunekit.recovery import CHECKPOINT_NAME, load_checkpoint

JOB = Path(__file__).with_name("_gradual_job.py")


def _job():
    spec = importlib.util.spec_from_file_location("_gradual_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_killed_gradual_job_resumes_to_the_same_final_state(tmp_path: Path) -> None:
    reference = _job().run(str(tmp_path / "ref"))
    ckpt_dir, out = tmp_path / "ckpt", tmp_path / "out"
    command = [sys.executable, str(JOB), str(ckpt_dir), "0.05", str(out)]
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    checkpoint = ckpt_dir / CHECKPOINT_NAME
    while time.monotonic() < deadline and not checkpoint.exists():
        time.sleep(0.05)
    time.sleep(0.6)  # somewhere mid-run, between checkpoints
    proc.kill()
    proc.wait()
    assert checkpoint.exists()
    killed_at = load_checkpoint(checkpoint)["step"]
    assert 0 < killed_at < 60, killed_at
    subprocess.run(
        [sys.executable, str(JOB), str(ckpt_dir), "0", str(out)], check=True, timeout=120
    )
    from prunekit.io import load

    resumed = load(
        out,
        _job()
        .run.__globals__["nn"]
        .Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(64, 32),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(32, 10),
        ),
    )
    ref_state = reference.state_dict()
    res_state = resumed.state_dict()
    assert set(ref_state) == set(res_state)
    for name, value in ref_state.items():
        assert torch.equal(value, res_state[name]), name  # bitwise
