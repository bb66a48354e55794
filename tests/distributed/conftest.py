"""The multi-process tests spawn ranks that import their functions from ``dist_workers`` by
name; this folder goes on ``sys.path`` (spawned children inherit it). ``solo_group`` is a
one-process Gloo group inside the test process, the reference a multi-rank run must match."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def solo_group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()
