"""A training job SIGKILLed mid-epoch resumes to bitwise the weights of an uninterrupted run.

The job trains with a plain ``DataLoader(shuffle=True)`` (no explicit generator: the shuffle is
seeded from the global torch RNG), a data set whose samples draw NumPy and Python random noise,
dropout, and a gradual-pruning :class:`Stepper`. Run as a script it is the job itself:
``python test_resume_exact.py CKPT_DIR OUT KILL_AT`` (``KILL_AT`` > 0: SIGKILL itself after that
step; 0: run to the end and write the final state to ``OUT``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from prunekit.errors import ConfigError
from prunekit.masks import masks_of
from prunekit.recovery import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, train_resumable
from prunekit.recovery.originals import original_state
from prunekit.schedules import Polynomial, Stepper

STEPS, EVERY, BATCHES_PER_EPOCH = 35, 4, 10


class NoisyDigits(Dataset[tuple[Tensor, Tensor]]):
    """Real digits (scikit-learn) with augmentation noise drawn from NumPy and Python RNGs."""

    def __init__(self, n: int = 160) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.x = torch.tensor(digits.data[:n], dtype=torch.float32) / 16.0
        self.y = torch.tensor(digits.target[:n], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        noise = torch.from_numpy(np.random.normal(0.0, 0.05, 64).astype(np.float32))
        return self.x[index] * (0.9 + 0.2 * random.random()) + noise, self.y[index]


class Job:
    """The model, loader and pruning callback of the job, seeded identically on every run."""

    def __init__(self, lr: float = 3e-3, batch_size: int = 16) -> None:
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        self.model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
        self.loader = DataLoader(NoisyDigits(), batch_size=batch_size, shuffle=True)
        self.stepper = Stepper(Polynomial(0.75, begin_step=3, end=30, frequency=3))
        self.lr = lr
        self._kill_at = 0
        self._stop_at = 0

    def __call__(self, step: int, model: nn.Module) -> None:
        self.stepper(step, model)
        if step == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self._stop_at:
            raise KeyboardInterrupt

    def state_dict(self) -> dict[str, Any]:
        return self.stepper.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stepper.load_state_dict(state)

    def run(self, checkpoint_dir: Path) -> int:
        return train_resumable(
            self.model, self.loader, steps=STEPS, every=EVERY, checkpoint_dir=checkpoint_dir,
            make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=self.lr), on_step=self,
        )  # fmt: skip

    def final(self) -> dict[str, Tensor]:
        masks = {f"mask:{n}": m for n, m in masks_of(self.model).items()}
        return {**original_state(self.model), **masks}


def _in_child(ckpt: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, __file__, str(ckpt), str(out), str(kill_at)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_the_uninterrupted_run(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job = Job()
        want: dict[str, Any] = {"started": job.run(tmp_path / "ref"), "final": job.final()}
    finally:
        torch.set_num_threads(threads)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.pt"
    killed = _in_child(ckpt, out, 26)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = load_checkpoint(ckpt / CHECKPOINT_NAME)
    assert (state["step"], state["skip"]) == (24, 24 % BATCHES_PER_EPOCH)  # mid-epoch
    resumed = _in_child(ckpt, out, 0)
    assert resumed.returncode == 0, resumed.stderr
    got = load_checkpoint(out)
    assert want["started"] == 0 and got["started"] == 24
    assert want["final"].keys() == got["final"].keys()
    for name, value in want["final"].items():
        assert torch.equal(value, got["final"][name]), name


@pytest.mark.parametrize(("stop_at", "skip"), [(23, 10), (27, 4)], ids=["epoch-end", "mid-epoch"])
def test_interrupted_in_process_resumes_bitwise(tmp_path: Path, stop_at: int, skip: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = Job()
        reference.run(tmp_path / "ref")
        interrupted = Job()
        interrupted._stop_at = stop_at
        with pytest.raises(KeyboardInterrupt):
            interrupted.run(tmp_path / "ckpt")
        assert load_checkpoint(tmp_path / "ckpt" / CHECKPOINT_NAME)["skip"] == skip
        resumed = Job()
        assert resumed.run(tmp_path / "ckpt") == stop_at - stop_at % EVERY
    finally:
        torch.set_num_threads(threads)
    want, got = reference.final(), resumed.final()
    assert want.keys() == got.keys()
    for name, value in want.items():
        assert torch.equal(value, got[name]), name


def _short_job(tmp_path: Path, **kwargs: Any) -> int:
    job = Job(**kwargs)
    return train_resumable(
        job.model, job.loader, steps=3, every=2, checkpoint_dir=tmp_path,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=job.lr), on_step=job,
    )  # fmt: skip


def test_resume_with_another_learning_rate_is_refused_naming_it(tmp_path: Path) -> None:
    _short_job(tmp_path)
    with pytest.raises(ConfigError, match=r"optimizer\.groups\.0\.lr: 0\.003 -> 0\.01"):
        _short_job(tmp_path, lr=0.01)


def test_resume_with_another_batch_size_is_refused_naming_it(tmp_path: Path) -> None:
    _short_job(tmp_path)
    with pytest.raises(ConfigError, match=r"loader\.batch_size: 16 -> 32"):
        _short_job(tmp_path, batch_size=32)


def test_resume_with_the_same_settings_continues(tmp_path: Path) -> None:
    assert _short_job(tmp_path) == 0
    assert _short_job(tmp_path) == 3  # resumed from the final checkpoint: nothing left to do


if __name__ == "__main__":
    torch.set_num_threads(1)
    job = Job()
    job._kill_at = int(sys.argv[3])
    started = job.run(Path(sys.argv[1]))
    save_checkpoint(sys.argv[2], {"started": started, "final": job.final()})
