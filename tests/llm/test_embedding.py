"""Sentence-embedding retention of a tiny random BERT encoder, and ``prunekit llm eval`` on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from prunekit.cli.llm import llm_app
from prunekit.errors import DataError
from prunekit.llm import (
    LLMPruneConfig,
    embedding_retention,
    prune_llm,
    read_sentences,
    sentence_embeddings,
)

TEXT = (
    " = Valkyria Chronicles III =\n\n"
    " Senjō no Valkyria 3 is a tactical role @-@ playing video game . It was short . "
    "The game began development in 2010 , carrying over a large portion of the work . "
    "It met with positive sales in Japan !\n"
    " = = Gameplay = =\n"
    " As with previous games , the player controls a squad of soldiers in battle ?\n"
)


def test_read_sentences_hand_worked(tmp_path: Path) -> None:
    path = tmp_path / "valid.txt"
    path.write_text(TEXT)
    assert read_sentences(path, n=10, min_words=6) == [
        "Senjō no Valkyria 3 is a tactical role @-@ playing video game .",
        "The game began development in 2010 , carrying over a large portion of the work .",
        "It met with positive sales in Japan !",
        "As with previous games , the player controls a squad of soldiers in battle ?",
    ]
    assert len(read_sentences(path, n=2, min_words=6)) == 2
    with pytest.raises(DataError, match="found 0 sentence"):
        read_sentences(path, min_words=40)


def test_retention_hand_worked() -> None:
    dense = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    same = embedding_retention(dense, 2.0 * dense)  # scale does not matter
    assert (same.mean_cosine, same.min_cosine, same.spearman) == pytest.approx((1.0, 1.0, 1.0))
    flipped = dense.clone()
    flipped[1] = -flipped[1]  # pairwise sims (0, .71, 0) -> (0, .71, -.71): ranks change
    got = embedding_retention(dense, flipped)
    assert got.min_cosine == pytest.approx(-1.0)
    assert got.mean_cosine == pytest.approx(1.0 / 3.0)
    assert got.spearman < 1.0 and got.sentences == 3
    with pytest.raises(DataError, match="shape"):
        embedding_retention(dense, dense[:2])


def test_mean_pooling_ignores_padding(tiny_bert: nn.Module, char_tokenizer: Any) -> None:
    sentences = ["a short one.", "a much longer sentence, padded less."]
    batched = sentence_embeddings(tiny_bert, char_tokenizer, sentences, batch_size=2)
    alone = torch.cat([sentence_embeddings(tiny_bert, char_tokenizer, [s]) for s in sentences])
    assert batched.shape == (2, 32)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_pruned_encoder_retains_less_than_dense(
    tiny_bert: nn.Module, char_tokenizer: Any, windows: torch.Tensor
) -> None:
    sentences = [f"sentence number {i} says {'ab' * i} and more." for i in range(12)]
    dense = sentence_embeddings(tiny_bert, char_tokenizer, sentences)
    pruned_model = prune_llm(tiny_bert, windows, LLMPruneConfig(sparsity=0.5), progress=False)
    pruned = sentence_embeddings(pruned_model.model, char_tokenizer, sentences)
    got = embedding_retention(dense, pruned)
    assert -1.0 <= got.min_cosine <= got.mean_cosine < 1.0 - 1e-6
    assert -1.0 <= got.spearman < 1.0


runner = CliRunner()


def test_cli_prunes_and_evaluates_an_encoder(
    tiny_bert: nn.Module, char_tokenizer: Any, tmp_path: Path
) -> None:
    dense_dir = tmp_path / "dense"
    tiny_bert.save_pretrained(dense_dir)
    char_tokenizer.save_pretrained(dense_dir)  # type: ignore[attr-defined]
    text = tmp_path / "text.txt"
    text.write_text(TEXT * 3)
    out = tmp_path / "pruned"
    args = ["prune", "--model", str(dense_dir), "--calib", str(text), "--out", str(out)]
    done = runner.invoke(llm_app, [*args, "--samples", "2", "--seq-len", "16"])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "prunekit_llm.json").read_text())["model"] == str(dense_dir)
    args = ["eval", "--model", str(out), "--text", str(text), "--sentences", "8"]
    done = runner.invoke(llm_app, args)  # reference: the dense model, from prunekit_llm.json
    assert done.exit_code == 0, done.output
    assert "spearman" in done.output and str(dense_dir.name) in done.output
    done = runner.invoke(llm_app, ["eval", "--model", str(dense_dir), "--text", str(text)])
    assert done.exit_code == 0, done.output
    assert "1.0000" in done.output  # compared with itself
