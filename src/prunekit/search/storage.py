"""Where a search's Optuna study lives, and how a stopped search resumes.

By default the study is kept in a journal file (Optuna's ``JournalStorage`` with a file
backend: every change is one appended line, so a process killed at any point leaves a readable
file); a database URL (``sqlite:///search.db``, ``postgresql://...``) uses Optuna's RDB
storage; ``":memory:"`` keeps nothing. The study records a fingerprint of the model (and the
budget, objective and searched layers) in its user attributes; opening it for another model or
another budget is refused.

Resuming: trials a killed search left running are marked failed (``interrupted``) and their
candidates queued again, so the next run evaluates them first and the search ends with the
number of finished trials asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from prunekit.errors import ConfigError

MEMORY = ":memory:"
INTERRUPTED = "interrupted"
UNIFORM = "uniform"
"""User attribute of the trial that evaluates the uniform allocation (``start_uniform``)."""
META = "prunekit"


def open_storage(storage: str | Path) -> BaseStorage:
    """A journal file (a path), an RDB storage (a URL with ``://``) or memory (``":memory:"``)."""
    text = str(storage)
    if text == MEMORY:
        return InMemoryStorage()
    if "://" in text:
        return RDBStorage(text)
    path = Path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_study(
    storage: str | Path,
    name: str,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    meta: Mapping[str, Any],
) -> optuna.Study:
    """Create or load study ``name``; a loaded study must carry the same ``meta`` (model
    fingerprint, budget, objective, searched layers) and directions."""
    backend = open_storage(storage)
    wanted = cast(list[Literal["minimize", "maximize"]], list(directions))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(
            storage=backend, study_name=name, directions=wanted, sampler=sampler,
            load_if_exists=True,
        )  # fmt: skip
    finally:
        optuna.logging.set_verbosity(verbosity)
    recorded = study.user_attrs.get(META)
    if recorded is None:
        study.set_user_attr(META, dict(meta))
        return study
    for key, value in meta.items():
        if recorded.get(key) != value:
            raise ConfigError(
                f"search storage {str(storage)!r}, study {name!r}: it holds a search with another "
                f"{key} ({_short(recorded.get(key))} here, {_short(value)} asked); use another "
                "storage file or study name"
            )
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise ConfigError(
            f"search storage {str(storage)!r}, study {name!r}: recorded objectives "
            f"{[d.name.lower() for d in study.directions]}, asked {list(directions)}"
        )
    return study


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark trials left running by a killed search as failed (``interrupted``) and queue their
    candidates again; returns how many. Assumes one driver per study."""
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            marks = {UNIFORM: True} if trial.user_attrs.get(UNIFORM) else None
            study.enqueue_trial(dict(trial.params), user_attrs=marks, skip_if_exists=False)
        count += 1
    return count


def finished(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward the budget: complete, or failed by their objective (not
    interrupted)."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED))
    ]
