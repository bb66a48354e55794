"""The README's examples run as written: every ``python`` block under "Use it from Python" on a
real LeNet-5 and real MNIST batches, and every cheap ``prunekit`` line of "Command line"."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Subset
from typer.testing import CliRunner

from prunekit.cli.main import app
from prunekit.data import load_dataset
from prunekit.errors import DataError
from prunekit.models import build_model

README = Path(__file__).resolve().parents[1] / "README.md"
#: Commands cheap enough to run in a test: they build and trace a model, no training.
CHEAP = {"list", "inspect"}


def section(title: str) -> str:
    """The text of the README section ``## title``, up to the next ``## `` heading."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README has no section '## {title}'"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of ``text`` whose info string is ``language`` (empty: untagged)."""
    pattern = rf"^```{re.escape(language)}[ \t]*\n(.*?)^```[ \t]*$"
    return re.findall(pattern, text, re.M | re.S)


def commands(block: str) -> list[list[str]]:
    """The ``prunekit ...`` commands of a shell block, continuation lines joined, comments cut."""
    joined = re.sub(r"\\\n", " ", block)
    lines = [line.strip() for line in joined.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("prunekit ")]


@pytest.fixture(scope="module")
def mnist_loader() -> DataLoader[Any]:
    try:
        train = load_dataset("mnist", "train")
    except DataError as error:
        pytest.skip(f"mnist data not found (set PRUNEKIT_DATA): {error}")
    return DataLoader(Subset(train, range(64)), batch_size=32)


def test_the_python_section_has_code() -> None:
    blocks = code_blocks(section("Use it from Python"), "python")
    assert blocks and all("prunekit" in block for block in blocks)


def test_python_examples_run(
    mnist_loader: DataLoader[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the examples save to relative paths
    torch.manual_seed(0)
    namespace: dict[str, Any] = {
        "model": build_model("lenet-5"),
        "train_loader": mnist_loader,
        "loader": mnist_loader,
        "val_loader": mnist_loader,
    }
    for number, block in enumerate(code_blocks(section("Use it from Python"), "python")):
        code = compile(block, f"README.md (python block {number + 1})", "exec")
        exec(code, namespace)
    result = namespace.get("result")
    assert result is not None and type(result).__name__ == "PruneResult"


def readme_commands() -> list[list[str]]:
    found = [c for b in code_blocks(section("Command line"), "") for c in commands(b)]
    return [c for c in found if len(c) > 1 and c[1] in CHEAP]


def test_the_command_line_section_lists_cheap_commands() -> None:
    assert {c[1] for c in readme_commands()} == CHEAP


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: " ".join(argv[1:]))
def test_cheap_readme_commands_run(argv: list[str]) -> None:
    assert argv[0] == "prunekit"
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    assert result.output.strip()
