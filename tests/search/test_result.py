"""The result: Pareto front worked out by hand, JSON, plot, table, and a config that
``prunekit.prune`` replays to the same MACs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from torch import nn

import prunekit
from prunekit.measure import count_macs
from prunekit.search import TrialRecord, pareto_front, search
from prunekit.search.budget import Budget


def record(number: int, score: float, macs: float, state: str = "complete") -> TrialRecord:
    return TrialRecord(number, state, score, macs, macs, 0.1, {"a": 0.5})


def test_pareto_front_by_hand() -> None:
    trials = [
        record(0, 0.5, 0.30),  # beaten by 2 (higher score, lower cost)
        record(1, 0.9, 0.40),  # front: the best score
        record(2, 0.6, 0.25),  # front
        record(3, 0.2, 0.10),  # front: the cheapest
        record(4, 0.95, 0.05, state="failed"),  # failed trials are never on the front
    ]
    assert [t.number for t in pareto_front(trials, "macs")] == [3, 2, 1]


def accuracy_like(model: nn.Module) -> float:
    return float(model[0].out_features) / 10 + float(model[2].out_features) / 100


def test_result_outputs_and_replay(tmp_path: Path, mlp_case: Any) -> None:
    model, x, data = mlp_case
    result = search(
        model, x, data=data, target={"macs": 0.5}, searcher="nsga2", trials=5,
        storage=":memory:", objective=accuracy_like, progress=False,
    )  # fmt: skip
    assert result.target == Budget("macs", 0.5)
    saved = json.loads(result.write_json(tmp_path / "s.json").read_text())
    assert len(saved["trials"]) == 5 and saved["best"] == result.best.number
    assert {t["number"] for t in saved["trials"] if t["pareto"]} == {t.number for t in result.front}
    assert result.plot(tmp_path / "front").suffix == ".png"
    text = Console(width=120, record=True)
    text.print(result.table())
    assert "Pareto front" in text.export_text()
    pruned = prunekit.prune(model, x, config=result.prune_config(), metrics=False).model
    macs = count_macs(pruned, x).total / count_macs(model, x).total
    assert macs == pytest.approx(result.best.macs, rel=1e-12)
    assert pruned[0].out_features == round((1 - result.best.sparsities["0"]) * 10)
