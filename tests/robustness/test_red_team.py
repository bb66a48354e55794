"""Red team for saves, checkpoints and resumed jobs: every attack ends classified.

Each case attacks prunekit's files or jobs (bad inputs, corrupt and swapped files, settings
changed under a checkpoint, SIGKILL during a save or during training, concurrent writers) and
its outcome is one of:

- ``clear error``: a prunekit error that names the file or field;
- ``correct``: the operation succeeded and gave the right model or state;
- ``silent wrong``: it succeeded with a wrong model or state;
- ``lost file``: a save or checkpoint that was complete before the attack is gone or unreadable;
- ``unclear error``: it failed with something other than a prunekit error.

The counts are printed at the end of the module; only the first two are acceptable. The cases
that start processes are marked slow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.io import load, save
from prunekit.io.atomic import sha256_of
from prunekit.methods import TicketConfig, find_ticket
from prunekit.recovery import load_checkpoint, save_checkpoint, train_resumable
from prunekit.recovery.checkpoint import MAGIC
from prunekit.train import StepCallback, train

CLEAR, CORRECT, SILENT, LOST, UNCLEAR = (
    "clear error", "correct", "silent wrong", "lost file", "unclear error",
)  # fmt: skip
OUTCOMES: Counter[str] = Counter()
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _tally(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    line = ", ".join(
        f"{name}: {OUTCOMES[name]}" for name in (CORRECT, CLEAR, SILENT, LOST, UNCLEAR)
    )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when output is captured
            reporter.write_line(f"\nred team ({sum(OUTCOMES.values())} cases): {line}")
    assert OUTCOMES[SILENT] == OUTCOMES[LOST] == OUTCOMES[UNCLEAR] == 0, line


def attempt(action: Callable[[], Any], right: Callable[[Any], bool]) -> str:
    """Run ``action`` and classify it; ``right(result)`` says whether a success is correct."""
    try:
        result = action()
    except PrunekitError as err:
        outcome = CLEAR if str(err).strip() else UNCLEAR
    except Exception:  # anything else is what the red team looks for
        outcome = UNCLEAR
    else:
        outcome = CORRECT if right(result) else SILENT
    OUTCOMES[outcome] += 1
    return outcome


def _model(value: float | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    if value is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
    return model


def _same_as(reference: nn.Module) -> Callable[[Any], bool]:
    want = reference.state_dict()

    def check(model: Any) -> bool:
        got = model.state_dict()
        return got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)

    return check


def _never(_: Any) -> bool:
    return False


def _edit_json(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    file = directory / "prunekit.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    edit(data)
    file.write_text(json.dumps(data), encoding="utf-8")


def _flip(file: Path, count: int, seed: int, start: int = 0) -> None:
    data = bytearray(file.read_bytes())
    for offset in random.Random(seed).sample(range(start, len(data)), count):
        data[offset] ^= 0xA5
    file.write_bytes(bytes(data))


def _swap_json_keys(data: dict[str, Any]) -> None:
    a, b = data["tensors"]["0.weight"], data["tensors"]["2.weight"]
    a["key"], b["key"] = b["key"], a["key"]


def _swap_in_weights(directory: Path) -> None:
    weights = directory / "model.safetensors"
    tensors = load_file(weights)
    tensors["0.weight"], tensors["2.weight"] = tensors["2.weight"], tensors["0.weight"]
    save_file(tensors, weights)
    _edit_json(directory, lambda data: data["weights"].update(sha256=sha256_of(weights)))


SAVE_ATTACKS: dict[str, Callable[[Path], None]] = {
    "flip one weight byte": lambda d: _flip(d / "model.safetensors", 1, 0, start=200),
    "flip 64 weight bytes": lambda d: _flip(d / "model.safetensors", 64, 1),
    "truncate weights": lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:-40]
    ),
    "truncate json": lambda d: (d / "prunekit.json").write_text("{", encoding="utf-8"),
    "delete weights": lambda d: (d / "model.safetensors").unlink(),
    "swap keys in json": lambda d: _edit_json(d, _swap_json_keys),
    "swap tensors in weights": _swap_in_weights,
    "shape edited in json": lambda d: _edit_json(
        d, lambda data: data["tensors"]["0.bias"].update(shape=[4, 2])
    ),
}


@pytest.mark.parametrize("attack", list(SAVE_ATTACKS))
def test_corrupt_or_swapped_save(tmp_path: Path, attack: str) -> None:
    original = _model(seed=1)
    directory = save(original, tmp_path / "m")
    SAVE_ATTACKS[attack](directory)
    assert attempt(lambda: load(directory, _model(seed=2)), _same_as(original)) in (CLEAR, CORRECT)


BAD_CALLS: dict[str, Callable[[Path], Any]] = {
    "save over a file": lambda p: (p.write_text("x"), save(_model(), p)),
    "load a missing path": lambda p: load(p / "nothing", _model()),
    "load an empty directory": lambda p: load(p, _model()),
    "load into another architecture": lambda p: load(save(_model(), p / "m"), nn.Linear(8, 8)),
    "save non-JSON extra": lambda p: save(_model(), p / "m", extra={"f": float("nan")}),
    "checkpoint with zero steps": lambda p: train_resumable(
        _model(),
        [],
        steps=0,
        checkpoint_dir=p,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
    ),
}


@pytest.mark.parametrize("call", list(BAD_CALLS))
def test_bad_inputs(tmp_path: Path, call: str) -> None:
    target = tmp_path / "f" if call == "save over a file" else tmp_path
    assert attempt(lambda: BAD_CALLS[call](target), _never) == CLEAR


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


def _framed(payload: bytes) -> bytes:
    return MAGIC + b"sha256 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


CHECKPOINT_ATTACKS: dict[str, Callable[[Path], None]] = {
    "flip 64 bytes": lambda f: _flip(f, 64, 2, start=len(MAGIC) + 72),
    "flip header digest": lambda f: _flip(f, 1, 3, start=len(MAGIC) + 8),
    "truncate": lambda f: f.write_bytes(f.read_bytes()[:-10]),
    "empty": lambda f: f.write_bytes(b""),
    "random bytes": lambda f: f.write_bytes(random.Random(4).randbytes(4096)),
    "pickled code with a valid digest": lambda f: f.write_bytes(
        _framed(pickle.dumps(_Evil(), protocol=2))
    ),
    "plain torch.save": lambda f: torch.save({"step": 1}, f),
}


@pytest.mark.parametrize("attack", list(CHECKPOINT_ATTACKS))
def test_corrupt_checkpoint(tmp_path: Path, attack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "c.pt"
    state = {"step": 3, "w": torch.arange(2048.0)}
    save_checkpoint(file, state)
    CHECKPOINT_ATTACKS[attack](file)

    def right(got: Any) -> bool:
        return got["step"] == 3 and torch.equal(got["w"], state["w"])

    assert attempt(lambda: load_checkpoint(file), right) in (CLEAR, CORRECT)
    assert not (tmp_path / "pwned").exists()


def _resume_with(tmp_path: Path, lr: float, batch: int) -> int:
    data = [
        (
            torch.randn(batch, 8, generator=torch.Generator().manual_seed(i)),
            torch.zeros(batch).long(),
        )
        for i in range(3)
    ]
    return train_resumable(
        _model(), data, steps=4, every=2, checkpoint_dir=tmp_path,
        make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=lr),
    )  # fmt: skip


@pytest.mark.parametrize(("lr", "batch"), [(0.5, 4), (0.1, 6)], ids=["lr", "batch"])
def test_resume_with_changed_settings(tmp_path: Path, lr: float, batch: int) -> None:
    _resume_with(tmp_path, 0.1, 4)
    assert attempt(lambda: _resume_with(tmp_path, lr, batch), _never) == CLEAR


def _ticket(path: Path, sparsity: float) -> list[float]:
    data = [(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.arange(4) % 8)]

    def train_round(m: nn.Module, k: int, on_step: StepCallback | None) -> None:
        train(m, data, epochs=1, lr=1e-2, progress=False, on_step=on_step)

    config = TicketConfig(final_sparsity=sparsity, rounds=1)
    return [
        r.sparsity for r in find_ticket(_model(), train_round, config, checkpoint_dir=path).rounds
    ]


def test_ticket_resumed_with_changed_config(tmp_path: Path) -> None:
    _ticket(tmp_path, 0.5)
    assert attempt(lambda: _ticket(tmp_path, 0.8), lambda s: s == [0.0, 0.8]) in (CLEAR, CORRECT)


KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from torch import nn
    from prunekit.io import save

    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    os.replace = dying_replace
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(2.0)
    save(model, sys.argv[1])
    """
)


def _run(*args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 2])
def test_sigkill_during_save(tmp_path: Path, kill_at: int) -> None:
    path = tmp_path / "m"
    save(_model(1.0), path)
    child = _run("-c", KILLED_SAVE, str(path), str(kill_at))
    assert child.returncode == -signal.SIGKILL, child.stderr

    def right(model: nn.Module) -> bool:  # the old save or the new one, whole
        return _same_as(_model(1.0))(model) or _same_as(_model(2.0))(model)

    outcome = attempt(lambda: load(path, _model()), right)
    if outcome == CLEAR:  # a complete save was there before the kill: it must not be lost
        OUTCOMES[CLEAR] -= 1
        OUTCOMES[LOST] += 1
        outcome = LOST
    assert outcome == CORRECT


def _module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigkill_during_resumable_training(tmp_path: Path) -> None:
    job_file = TESTS / "recovery" / "test_resume_exact.py"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job = _module(job_file).Job()
        job.run(tmp_path / "ref")
        reference = job.final()
    finally:
        torch.set_num_threads(threads)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.pt"
    killed = _run(str(job_file), str(ckpt), str(out), "13")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _run(str(job_file), str(ckpt), str(out), "0")
    assert resumed.returncode == 0, resumed.stderr

    def right(state: dict[str, Any]) -> bool:
        final = state["final"]
        return final.keys() == reference.keys() and all(
            torch.equal(final[k], reference[k]) for k in reference
        )

    assert attempt(lambda: load_checkpoint(out), right) == CORRECT


@pytest.mark.slow
def test_concurrent_writers_and_a_reader(tmp_path: Path) -> None:
    concurrent = _module(TESTS / "io" / "test_io_concurrent.py")
    path = tmp_path / "m"
    failures = concurrent.run_concurrent_saves(path, 3)
    leftovers = sorted(p.name for p in tmp_path.iterdir()) != ["m"]
    if failures or leftovers:
        OUTCOMES[LOST if leftovers else UNCLEAR] += 1
        pytest.fail(f"failures: {failures}; leftovers: {leftovers}")

    def right(model: nn.Module) -> bool:
        values = {float(v) for p in model.parameters() for v in p.detach().unique()}
        return len(values) == 1 and values <= {1.0, 2.0, 3.0}

    assert attempt(lambda: load(path, concurrent._model()), right) == CORRECT
