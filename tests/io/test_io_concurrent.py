"""Processes saving different models to one path at once leave exactly one complete save.

Each child process waits for a common start time, then saves its own model (every value equal
to its index) to the same directory three times in a row, while another process keeps loading
it. Afterwards the directory loads, passes its checksums and holds one child's model whole; no
staging or previous directory is left beside it, and no load saw a torn save.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.io import load

WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    from prunekit.io import save

    path, value, start = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    time.sleep(max(0.0, start - time.time()))
    for _ in range(3):
        save(model, path, extra={"writer": value})
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    from prunekit.io import load

    path, start = sys.argv[1], float(sys.argv[2])
    torch.set_num_threads(1)
    time.sleep(max(0.0, start - time.time()))
    loads = 0
    while time.time() < start + 6:
        model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
        load(path, model)
        values = {float(v) for p in model.parameters() for v in p.detach().unique()}
        assert len(values) == 1, values  # one writer's model, never a mix
        loads += 1
    print(loads)
    """
)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))


def run_concurrent_saves(path: Path, writers: int, reader: bool = True) -> list[str]:
    """Start ``writers`` saving processes (and a loading one) at once; their failures' stderr."""
    from prunekit.io import save

    save(_model(), path)  # the reader needs a save to start from
    start = time.time() + 8.0  # enough for every child to import torch on a loaded machine
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(i + 1), str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    if reader:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", READER, str(path), str(start)],
                stderr=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            failures.append(err)
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_leave_one_complete_save(tmp_path: Path, writers: int) -> None:
    path = tmp_path / "run" / "model"
    assert run_concurrent_saves(path, writers) == []
    loaded = load(path, _model())  # checks the file digest and every tensor's digest
    values = {float(v) for p in loaded.parameters() for v in p.detach().unique()}
    assert len(values) == 1 and values <= {float(i + 1) for i in range(writers)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "prunekit.json"]
    assert torch.equal(loaded[0].weight, torch.full((256, 256), values.pop()))
