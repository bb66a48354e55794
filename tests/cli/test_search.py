"""``prunekit search RECIPE`` on real data (scikit-learn digits): the chosen recipe replays
through ``prunekit prune`` to the same MACs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from prunekit.cli.search import search_command
from prunekit.pipeline import run_recipe
from prunekit.recipe import load_recipe

app = typer.Typer()
app.command("search")(search_command)


@app.callback()
def _root() -> None:
    """Makes ``search`` a subcommand, as under ``prunekit``."""


runner = CliRunner()


def recipe(tmp_path: Path, **prune: Any) -> Path:
    spec = {
        "model": {"name": "small-vgg"},
        "data": {"dataset": "digits", "batch_size": 64, "train_limit": 256},
        "train": {"epochs": 1, "lr": 0.003},
        "prune": {"granularity": "channel", **prune},
        "output": {"dir": str(tmp_path / "out"), "report": False, "latency": False,
                   "plots": False, "save": False},
        "search": {"searcher": "random", "trials": 3, "n_batches": 2, "start_uniform": True,
                   "storage": str(tmp_path / "study.journal")},
        "threads": 1,
    }  # fmt: skip
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_search_writes_front_and_a_recipe_that_prune_replays(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", str(recipe(tmp_path, target={"macs": 0.4}))])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    trials = json.loads((out / "search.json").read_text())
    assert len(trials["trials"]) == 3 and (out / "pareto.png").stat().st_size > 0
    best = next(t for t in trials["trials"] if t["number"] == trials["best"])
    assert best["macs"] <= 0.4
    uniform = next(t for t in trials["trials"] if t["number"] == 0)
    assert f"uniform allocation: trial 0, score {uniform['score']:.4f}" in result.output
    replay = load_recipe(out / "best.yaml")
    assert replay.prune.overrides == best["sparsities"] and replay.prune.target is None
    report = run_recipe(replay, progress=False, log=lambda _: None)
    assert report.pruned.macs / report.before.macs == pytest.approx(best["macs"], rel=1e-9)


def test_search_needs_a_target(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", str(recipe(tmp_path, sparsity=0.5))])
    assert result.exit_code == 2
    assert "prune.target is the search's budget" in result.output


def test_search_section_is_validated(tmp_path: Path) -> None:
    path = recipe(tmp_path, target={"macs": 0.4})
    data = yaml.safe_load(path.read_text())
    data["search"]["searcher"] = "tpee"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 2
    assert "did you mean 'tpe'" in result.output


@pytest.mark.slow
def test_search_finetunes_the_chosen_model_over_two_processes(tmp_path: Path) -> None:
    import torch

    import prunekit
    from prunekit.measure import count_macs

    path = recipe(tmp_path, target={"macs": 0.5})
    spec = yaml.safe_load(path.read_text())
    spec["finetune"] = {"max_steps": 3, "lr": 0.01, "processes": 2}
    spec["search"]["trials"] = 2
    path.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 steps on 2 process(es)" in result.output
    out = tmp_path / "out"
    tuned = prunekit.load(out / "best" / "model")
    replay = load_recipe(out / "best.yaml")  # the same allocation, pruned without fine-tuning
    no_tune = replay.finetune.model_copy(update={"max_steps": None, "epochs": 0})
    report = run_recipe(replay.model_copy(update={"finetune": no_tune}), progress=False,
                        log=lambda _: None)  # fmt: skip
    example = torch.zeros(1, 1, 8, 8)
    assert count_macs(tuned, example).total == report.pruned.macs
    one_shot = report.result.model.state_dict()
    assert tuned.state_dict().keys() == one_shot.keys()
    assert any(not torch.equal(v, one_shot[k]) for k, v in tuned.state_dict().items())


def test_stages_option_is_validated(tmp_path: Path) -> None:
    path = recipe(tmp_path, target={"macs": 0.4})
    result = runner.invoke(app, ["search", str(path), "--space", "stage", "--stages", "size"])
    assert result.exit_code == 2
    assert "stages must be a name depth >= 1" in result.output
