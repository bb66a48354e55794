"""``prunekit llm width`` (then ``eval``) on tiny saved LLaMA and BERT models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.llm import llm_app

runner = CliRunner()


def _said(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def _saved(model: nn.Module, tokenizer: Any, directory: Path) -> Path:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _width_args(
    model: nn.Module, tokenizer: Any, text: Path, tmp_path: Path, out: Path
) -> list[str]:
    """``width`` with ``model`` saved under ``tmp_path``, calibrated on ``text``, into ``out``."""
    saved = _saved(model, tokenizer, tmp_path / "model")
    return ["width", "--model", str(saved), "--calib", str(text), "--out", str(out)]


@pytest.fixture
def text(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text("To be, or not to be, that is the question. " * 20)
    return path


def test_width_then_eval_decoder(
    tiny_llama: nn.Module, char_tokenizer: Any, text: Path, tmp_path: Path
) -> None:
    out = tmp_path / "narrow"
    args = _width_args(tiny_llama, char_tokenizer, text, tmp_path, out)
    done = runner.invoke(llm_app, [*args, "--sparsity", "0.5", "--samples", "2", "--seq-len", "16"])
    assert done.exit_code == 0, done.output
    assert "removed 1 of 2 head units and 40 of 64 MLP neurons" in _said(done.output)
    record = json.loads((out / "prunekit_llm.json").read_text())["width"]
    assert record["allocation"]["mlp_removed"] == 40 and record["config_describes_shapes"]
    assert (out / "prunekit_plan.json").is_file()
    from transformers import AutoModelForCausalLM

    reloaded: Any = AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.config.num_key_value_heads == 1 and reloaded.config.intermediate_size == 24
    args = ["eval", "--model", str(out), "--text", str(text), "--seq-len", "16"]
    done = runner.invoke(llm_app, [*args, "--max-windows", "2", "--tokens", "2"])
    assert done.exit_code == 0, done.output
    assert "perplexity" in done.output


def test_width_heads_of_an_encoder_then_eval(
    tiny_bert: nn.Module, char_tokenizer: Any, text: Path, tmp_path: Path
) -> None:
    out = tmp_path / "narrow"
    args = _width_args(tiny_bert, char_tokenizer, text, tmp_path, out)
    args += ["--sparsity", "0.5", "--of", "blocks", "--round-to", "1", "--samples", "2"]
    done = runner.invoke(llm_app, [*args, "--seq-len", "16"])
    assert done.exit_code == 0, done.output
    assert "load with prunekit.llm.load_pruned" in _said(done.output)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text(
        "\n".join(f"This is test sentence number {i} of the set." for i in range(8))
    )
    done = runner.invoke(llm_app, ["eval", "--model", str(out), "--text", str(sentences)])
    assert done.exit_code == 0, done.output
    assert "mean cosine" in done.output


def test_width_bad_options_exit_with_one_line(
    tiny_llama: nn.Module, char_tokenizer: Any, text: Path, tmp_path: Path
) -> None:
    args = _width_args(tiny_llama, char_tokenizer, text, tmp_path, tmp_path / "x")
    done = runner.invoke(llm_app, [*args, "--sparsity", "1.0"])
    assert done.exit_code == 2
    assert "sparsity must be in [0, 1)" in _said(done.output)
    done = runner.invoke(llm_app, [*args, "--no-heads", "--no-mlp"])
    assert done.exit_code == 2
    assert "nothing to prune" in _said(done.output)
    done = runner.invoke(llm_app, [*args, "--sparsity", "0.6", "--no-mlp", "--seq-len", "16"])
    assert done.exit_code == 2
    assert "cannot remove" in _said(done.output)
    done = runner.invoke(llm_app, [*args, "--split", "best"])
    assert done.exit_code == 2
    assert "split must be 'rule' or 'data'" in _said(done.output)


def test_width_split_data_prunes_and_saves(
    tiny_llama: nn.Module, char_tokenizer: Any, text: Path, tmp_path: Path
) -> None:
    out = tmp_path / "narrow"
    args = _width_args(tiny_llama, char_tokenizer, text, tmp_path, out)
    done = runner.invoke(llm_app, [*args, "--split", "data", "--seq-len", "16", "--samples", "2"])
    assert done.exit_code == 0, done.output
    assert (out / "prunekit_plan.json").exists()
