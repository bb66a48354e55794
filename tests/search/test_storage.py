"""The study lives in a journal file: a search killed mid-way resumes and finishes with the
trials asked for; a file from another model is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.search import search
from prunekit.search.storage import UNIFORM, finished, open_storage, requeue_interrupted

from .conftest import batches, cnn, mlp

HERE = Path(__file__).parent


def width(model: nn.Module) -> float:
    return float(model[0].out_features)


def test_resuming_a_finished_study_runs_only_the_rest(tmp_path: Path, mlp_case: Any) -> None:
    model, x, data = mlp_case
    journal = tmp_path / "study.journal"
    options = dict(data=data, target={"macs": 0.5}, searcher="random", storage=journal,
                   objective=width, progress=False)  # fmt: skip
    first = search(model, x, trials=2, **options)
    assert [t.number for t in first.trials] == [0, 1]
    again = search(model, x, trials=4, **options)
    assert [t.number for t in again.trials] == [0, 1, 2, 3]
    assert again.trials[:2] == first.trials


def test_the_uniform_trial_is_marked_and_keeps_its_mark(tmp_path: Path, mlp_case: Any) -> None:
    """A study started without the uniform trial gets none on resume; an interrupted uniform
    trial is queued again as the uniform trial."""
    model, x, data = mlp_case
    options = dict(data=data, target={"macs": 0.5}, searcher="random", objective=width,
                   progress=False)  # fmt: skip
    journal = tmp_path / "plain.journal"
    search(model, x, trials=1, storage=journal, **options)
    resumed = search(model, x, trials=2, storage=journal, start_uniform=True, **options)
    assert resumed.uniform is None and not any(t.uniform for t in resumed.trials)

    study = optuna.create_study(storage=open_storage(":memory:"))
    study.enqueue_trial({"a": 1.0}, user_attrs={UNIFORM: True})
    study.ask({"a": optuna.distributions.FloatDistribution(0.1, 1.0)})  # left running
    assert requeue_interrupted(study) == 1
    again = study.ask({"a": optuna.distributions.FloatDistribution(0.1, 1.0)})
    assert again.params == {"a": 1.0} and again.user_attrs[UNIFORM] is True


def test_default_storage_is_a_journal_file_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlp_case: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    model, x, data = mlp_case
    result = search(model, x, data=data, target={"macs": 0.5}, searcher="random", trials=1,
                    objective=width, progress=False)  # fmt: skip
    assert Path(result.storage).parent == Path("runs/search")
    assert Path(result.storage).name.startswith("study-")
    assert (tmp_path / result.storage).stat().st_size > 0


def test_storage_of_another_model_is_refused(tmp_path: Path, mlp_case: Any) -> None:
    model, x, data = mlp_case
    journal = tmp_path / "study.journal"
    search(model, x, data=data, target={"macs": 0.5}, searcher="random", trials=1,
           storage=journal, study_name="s", objective=width, progress=False)  # fmt: skip
    other = mlp()
    nn.init.zeros_(other[0].bias)  # same shapes, other values
    with pytest.raises(ConfigError, match="holds a search with another model"):
        search(other, x, data=data, target={"macs": 0.5}, searcher="random", trials=2,
               storage=journal, study_name="s", objective=width, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="another model"):
        search(cnn(), batches((1, 8, 8), 4, 1)[0][0][:1], data=batches((1, 8, 8), 4, 2),
               target={"macs": 0.5}, searcher="random", trials=2, storage=journal,
               study_name="s", objective=width, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="another target"):
        search(model, x, data=data, target={"macs": 0.6}, searcher="random", trials=2,
               storage=journal, study_name="s", objective=width, progress=False)  # fmt: skip


SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    import torch
    from conftest import mlp, batches
    from prunekit.search import search

    def slow_width(model):
        time.sleep(0.4)
        return float(model[0].out_features)

    torch.manual_seed(1)
    search(mlp(), torch.zeros(1, 4), data=batches((4,), 3, 4), target={{"macs": 0.5}},
           searcher="random", trials=50, storage={journal!r}, study_name="kill",
           objective=slow_width, progress=False)
    """
)


def slow_width(model: nn.Module) -> float:
    return float(model[0].out_features)


@pytest.mark.slow
def test_sigkill_mid_search_then_resume_finishes_with_n_trials(tmp_path: Path) -> None:
    journal = tmp_path / "kill.journal"
    script = SCRIPT.format(here=str(HERE), journal=str(journal))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if journal.exists() and _finished(journal) >= 3:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = _finished(journal)
    assert 3 <= done < 50
    study = optuna.load_study(study_name="kill", storage=open_storage(journal))
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    result = search(mlp(), torch.zeros(1, 4), data=batches((4,), 3, 4),
                    target={"macs": 0.5}, searcher="random", trials=done + 2, storage=journal,
                    study_name="kill", objective=slow_width, progress=False)  # fmt: skip
    assert len(result.trials) == done + 2
    assert all(t.state == "complete" for t in result.trials)
    if running:  # the trial the kill interrupted was queued again with its candidate
        params = running[0].params
        redone = optuna.load_study(study_name="kill", storage=open_storage(journal)).trials
        assert any(t.params == params and t.state.name == "COMPLETE" for t in redone)


def _finished(journal: Path) -> int:
    try:
        study = optuna.load_study(study_name="kill", storage=open_storage(journal))
    except KeyError:
        return 0
    return len(finished(study))
