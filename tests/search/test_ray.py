"""Trials on a real local Ray with two workers give the same trials and front as one worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prunekit.search import search

pytest.importorskip("ray")


@pytest.mark.slow
def test_two_ray_workers_give_the_same_front_as_one(tmp_path: Path, cnn_case: Any) -> None:
    model, x, data = cnn_case
    options = dict(data=data, target={"macs": 0.4}, searcher="random", trials=6, seed=3,
                   n_batches=2, progress=False, threads=1)  # fmt: skip
    one = search(model, x, storage=tmp_path / "one.journal", **options)
    two = search(model, x, storage=tmp_path / "two.journal", workers=2, **options)
    key = [(t.number, t.sparsities, t.score, t.macs) for t in one.trials]
    assert [(t.number, t.sparsities, t.score, t.macs) for t in two.trials] == key
    assert [t.number for t in two.front] == [t.number for t in one.front]
    assert all(t.state == "complete" for t in two.trials)
