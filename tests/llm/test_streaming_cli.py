"""``prunekit llm stream MODEL_DIR OUT_DIR`` on a tiny sharded LLaMA with a character tokenizer
(the command on its own Typer app, as ``prunekit llm`` mounts it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import typer
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.llm_stream import stream_command
from prunekit.llm import load_pruned

runner = CliRunner()
llm_app = typer.Typer()
llm_app.command("stream")(stream_command)
llm_app.command("other")(lambda: None)  # two commands: the command name is the first argument


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


def test_stream_width_removes_heads_and_neurons_and_loads_with_load_pruned(
    tiny_llama: nn.Module, char_tokenizer: Any, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    tiny_llama.save_pretrained(source, max_shard_size="20KB")
    char_tokenizer.save_pretrained(source)
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    out = tmp_path / "out"
    args = ["stream", str(source), str(out), "--calib", str(text), "--heads", "1", "--mlp", "16"]
    done = runner.invoke(llm_app, [*args, "--samples", "4", "--seq-len", "16"])
    assert done.exit_code == 0, done.output
    assert "removed 1 of 2 head units and 16 of 64 MLP neurons in each of 2 blocks" in done.output
    record = json.loads((out / "prunekit_llm.json").read_text())
    assert record["allocation"]["mlp_removed"] == 16
    assert record["config_describes_shapes"] is True
    model = load_pruned(out)
    assert tuple(model.model.layers[0].self_attn.k_proj.weight.shape) == (8, 32)
    assert tuple(model.model.layers[1].mlp.down_proj.weight.shape) == (32, 48)
    bad = runner.invoke(
        llm_app,
        ["stream", str(source), str(tmp_path / "bad"), "--width", "0.2", "--sparsity", "0.5"],
    )
    assert bad.exit_code == 2
    assert "give one or the other" in bad.output
    assert not (tmp_path / "bad").exists()
