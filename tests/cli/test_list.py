"""``prunekit list``: every registry, every name, readable on an 80-column terminal."""

import io

from rich.console import Console

from prunekit.adapters import FAMILIES
from prunekit.cli.views import MODEL_SPECS, registry_tables
from prunekit.data import DATASETS
from prunekit.estimators import ESTIMATORS
from prunekit.granularity import GRANULARITIES
from prunekit.methods import METHODS
from prunekit.models import MODELS
from prunekit.ops import LAYER_RULES
from prunekit.schedules import SCHEDULES


def rendered(width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    for table in registry_tables():
        console.print(table)
    return console.export_text()


def test_no_line_is_wider_than_80_columns() -> None:
    lines = rendered().splitlines()
    assert lines
    assert max(len(line) for line in lines) <= 80


def test_every_registry_has_a_table() -> None:
    titles = [str(t.title) for t in registry_tables()]
    assert titles == [
        "estimators",
        "granularities",
        "schedules",
        "training-time methods",
        "allocation searchers",
        "model families",
        "model specs",
        "layer rules",
        "models",
        "datasets",
    ]


def test_every_registry_name_appears_whole() -> None:
    text = rendered()
    registries = (
        ESTIMATORS,
        GRANULARITIES,
        SCHEDULES,
        METHODS,
        FAMILIES,
        LAYER_RULES,
        MODELS,
        DATASETS,
    )
    names = [name for registry in registries for name in registry.names()]
    names += [spec for spec, _ in MODEL_SPECS]
    missing = [name for name in names if f"│ {name} " not in text]
    assert not missing


def test_capabilities_and_granularity_kinds_are_spelled_out() -> None:
    text = rendered()
    assert "layer-wise (llm)" in text  # wanda, sparsegpt, magnitude
    assert "blocks (layer)" in text
    assert "whole residual blocks" in text
    assert "masks or surgery" in text
