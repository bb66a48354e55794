"""``prunekit llm stream MODEL_DIR OUT_DIR`` on a tiny sharded LLaMA with a character tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.llm import llm_app

runner = CliRunner()


def test_stream_prunes_a_sharded_model_and_refuses_bad_input(
    tiny_llama: nn.Module, char_tokenizer: Any, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    tiny_llama.save_pretrained(source, max_shard_size="20KB")
    char_tokenizer.save_pretrained(source)
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    out = tmp_path / "out"
    args = ["stream", str(source), str(out), "--calib", str(text), "--method", "wanda"]
    done = runner.invoke(llm_app, [*args, "--sparsity", "0.5", "--samples", "4", "--seq-len", "16"])
    assert done.exit_code == 0, done.output
    assert "pruned 14 layers of 2 blocks with wanda (mean sparsity 0.500)" in done.output
    record = json.loads((out / "prunekit_llm.json").read_text())
    assert set(record["layer_sparsity"].values()) == {0.5}
    from transformers import AutoModelForCausalLM

    weight = AutoModelForCausalLM.from_pretrained(out).model.layers[1].mlp.down_proj.weight
    assert torch.equal((weight == 0).sum(dim=1), torch.full((32,), 32))
    bad = runner.invoke(
        llm_app,
        ["stream", str(source), str(tmp_path / "bad"), "--pattern", "3:6", "--calib", str(text)],
    )
    assert bad.exit_code == 2
    assert "needs input widths divisible by 6" in bad.output
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())
