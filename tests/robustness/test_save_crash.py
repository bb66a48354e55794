"""A save killed (SIGKILL) between its renames never loses the previous good save.

The child process saves a second model over a first save, with ``os.replace`` patched to kill
the process right after its ``n``-th call; the directory must then load either the previous
save (killed mid-switch) or the new one (killed after the switch), never fail its checksum.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.io import load, save

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from torch import nn
    from prunekit.io import save

    kill_after = int(sys.argv[2])
    calls = []
    real_replace = os.replace

    def dying_replace(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = dying_replace
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(2.0)
    save(model, sys.argv[1])
    print("finished with", len(calls), "replace calls")
    """
)


def _model(value: float) -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def _values(path: Path) -> set[float]:
    loaded = load(path, _model(0.0))
    return {float(v) for p in loaded.parameters() for v in p.detach().flatten()}


def _save_in_child(path: Path, kill_after: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(kill_after)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("kill_after", [1, 2])
def test_killed_save_keeps_a_loadable_directory(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "run" / "model"
    save(_model(1.0), path)
    (path / "notes.txt").write_text("kept", encoding="utf-8")
    child = _save_in_child(path, kill_after)
    assert child.returncode == -signal.SIGKILL, child.stderr
    # killed after the first rename: the previous save; after the switch: the new one
    assert _values(path) == ({1.0} if kill_after == 1 else {2.0})
    save(_model(3.0), path)  # the next save recovers and replaces it
    assert _values(path) == {3.0}
    assert (path / "notes.txt").read_text(encoding="utf-8") == "kept"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]
