"""``prunekit llm heal`` on a tiny width-pruned LLaMA: healed, saved, reloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn
from typer.testing import CliRunner

from prunekit.cli.main import app

runner = CliRunner()


def test_width_then_heal_then_load(
    tiny_llama: nn.Module, char_tokenizer: Any, tmp_path: Path
) -> None:
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. " * 20)
    dense = tmp_path / "dense"
    tiny_llama.save_pretrained(dense)
    char_tokenizer.save_pretrained(dense)
    narrow, healed = tmp_path / "narrow", tmp_path / "healed"
    common = ["--samples", "4", "--seq-len", "16"]
    done = runner.invoke(
        app,
        [
            "llm",
            "width",
            "--model",
            str(dense),
            "--calib",
            str(text),
            "--out",
            str(narrow),
            "--sparsity",
            "0.3",
            *common,
        ],
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(
        app,
        [
            "llm",
            "heal",
            str(narrow),
            "--text",
            str(text),
            "--out",
            str(healed),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--distill",
            "0.5",
            *common,
        ],
    )
    assert done.exit_code == 0, done.output
    assert "healed with lora for 3 steps (96 tokens)" in " ".join(done.output.split())
    record = json.loads((healed / "prunekit_llm.json").read_text())
    assert record["model"] == str(dense) and record["heal"]["distill"] == 0.5
    from prunekit.llm import load_pruned

    reloaded = load_pruned(healed)
    from prunekit.llm.pruned_io import load_pruned as load_narrow

    assert {k: v.shape for k, v in reloaded.state_dict().items()} == {
        k: v.shape for k, v in load_narrow(narrow).state_dict().items()
    }


def test_heal_refuses_bad_options_in_one_line(
    tiny_llama: nn.Module, char_tokenizer: Any, tmp_path: Path
) -> None:
    dense = tmp_path / "dense"
    tiny_llama.save_pretrained(dense)
    char_tokenizer.save_pretrained(dense)
    text = tmp_path / "text.txt"
    text.write_text("abc " * 50)
    done = runner.invoke(
        app,
        [
            "llm",
            "heal",
            str(dense),
            "--text",
            str(text),
            "--out",
            str(tmp_path / "o"),
            "--method",
            "qlora",
        ],
    )
    assert done.exit_code != 0
    assert "'lora' or 'full'" in done.output
    assert not (tmp_path / "o").exists()
