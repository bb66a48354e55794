"""``prunekit llm prune`` / ``eval`` on a tiny saved LLaMA with a character-level tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.llm import llm_app

runner = CliRunner()


@pytest.fixture
def saved_llama(tiny_llama: nn.Module, char_tokenizer: Any, tmp_path: Path) -> Path:
    directory = tmp_path / "tiny"
    tiny_llama.save_pretrained(directory)
    char_tokenizer.save_pretrained(directory)
    return directory


def test_prune_then_eval(saved_llama: Path, tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    out = tmp_path / "pruned"
    args = ["prune", "--model", str(saved_llama), "--calib", str(text), "--out", str(out)]
    args += ["--method", "sparsegpt", "--pattern", "2:4", "--samples", "4", "--seq-len", "16"]
    done = runner.invoke(llm_app, args)
    assert done.exit_code == 0, done.output
    record = json.loads((out / "prunekit_llm.json").read_text())
    assert set(record["layer_sparsity"].values()) == {0.5}
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out)
    weight = reloaded.model.layers[0].mlp.up_proj.weight
    assert torch.all((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1) <= 2)
    args = ["eval", "--model", str(out), "--text", str(text), "--seq-len", "16"]
    done = runner.invoke(llm_app, [*args, "--max-windows", "3", "--tokens", "2"])
    assert done.exit_code == 0, done.output
    assert "perplexity" in done.output


def test_bad_options_exit_with_one_line(saved_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    args = ["prune", "--model", str(saved_llama), "--calib", "none.txt", "--out", str(out)]
    done = runner.invoke(llm_app, [*args, "--sparsity", "1.0"])
    assert done.exit_code == 2
    assert "sparsity must be in [0, 1)" in done.output
    done = runner.invoke(llm_app, [*args, "--method", "wanda"])
    assert done.exit_code == 2
    assert "does not exist" in done.output


def test_depth_then_owl_prune(saved_llama: Path, tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    out = tmp_path / "short"
    args = ["depth", "--model", str(saved_llama), "--calib", str(text), "--out", str(out)]
    args += ["--samples", "4", "--seq-len", "16"]
    done = runner.invoke(llm_app, [*args, "--remove", "1"])
    assert done.exit_code == 0, done.output
    record = json.loads((out / "prunekit_llm.json").read_text())
    assert len(record["depth"]["scores"]) == 2 and len(record["depth"]["removed"]) == 1
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 1
    done = runner.invoke(llm_app, [*args, "--remove", "2"])
    assert done.exit_code == 2
    assert "k (the number of blocks to remove)" in done.output
    owl = tmp_path / "owl"
    args = ["prune", "--model", str(saved_llama), "--calib", str(text), "--out", str(owl)]
    args += ["--samples", "4", "--seq-len", "16", "--allocation", "owl", "--owl-lambda", "0.1"]
    done = runner.invoke(llm_app, args)
    assert done.exit_code == 0, done.output
    values = json.loads((owl / "prunekit_llm.json").read_text())["layer_sparsity"].values()
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.02)
    assert len({round(v, 2) for v in values}) == 2  # one sparsity per block, blocks differ
