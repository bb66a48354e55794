"""Rich tables the CLI prints: registries, job results, score summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from rich.table import Table

from prunekit.report.tables import before_after_table, layer_table

if TYPE_CHECKING:
    from prunekit.api import ScoreResult
    from prunekit.pipeline import JobReport
    from prunekit.result import PruneResult


MODEL_SPECS: tuple[tuple[str, str], ...] = (
    ("NAME", "a prunekit reference model (models table)"),
    ("torchvision:NAME", "torchvision.models.get_model(NAME, weights=None)"),
    ("timm:NAME", "timm.create_model(NAME, pretrained=False)"),
    ("hf:DIR", "a local Hugging Face directory (transformers)"),
    ("FILE.py:FACTORY", "FACTORY() from a Python file"),
    ("MODULE:FACTORY", "FACTORY() from an importable module"),
)
"""The model spec forms ``--model`` and recipes accept (nothing is downloaded)."""

CAPABILITY_LABELS: dict[str, str] = {
    "units": "units",
    "blocks": "blocks (layer)",
    "layerwise-reconstruction": "layer-wise (llm)",
}
UNIT_LABELS: dict[str, str] = {
    "weight": "single weights",
    "slot": "N of every M weights",
    "tile": "weight tiles",
    "channel": "neurons / filters",
    "block": "whole residual blocks",
}
SPEC_EXAMPLES: dict[str, str] = {"nm": "2:4, nm:1:4", "block": "block:4x4"}


def _table(title: str, *columns: str) -> Table:
    """A table whose first column (the names users type) never wraps."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column(columns[0], no_wrap=True, style="bold")
    for column in columns[1:]:
        table.add_column(column, overflow="fold")
    return table


def registry_tables() -> list[Table]:
    """One table per registry, with the names users type, readable at 80 columns."""
    from prunekit.adapters import FAMILIES
    from prunekit.data import DATASETS
    from prunekit.estimators import ESTIMATORS
    from prunekit.granularity import GRANULARITIES
    from prunekit.methods import METHODS
    from prunekit.models import MODELS
    from prunekit.ops import LAYER_RULES
    from prunekit.schedules import SCHEDULES
    from prunekit.search import SEARCHERS

    estimators = _table("estimators", "name", "data", "applies to", "what it computes")
    for name in ESTIMATORS.names():
        cls = ESTIMATORS.get(name)
        applies = [CAPABILITY_LABELS[c] for c in CAPABILITY_LABELS if c in cls.capabilities]
        data = "yes" if cls.needs_data else "no"
        estimators.add_row(name, data, "\n".join(applies), cls.summary)
    granularities = _table("granularities", "name", "unit", "removed by", "specs, aliases")
    for name in GRANULARITIES.names():
        gran = GRANULARITIES.get(name)
        how = "surgery" if gran.needs_surgery else "masks"
        how += " or surgery" if gran.structural and gran.maskable else ""
        forms = ", ".join([SPEC_EXAMPLES.get(name, name), *GRANULARITIES.aliases_of(name)])
        granularities.add_row(name, UNIT_LABELS.get(gran.unit, gran.unit), how, forms)
    schedules = _table("schedules", "name", "aliases", "sparsity over training steps")
    for name in SCHEDULES.names():
        aliases = ", ".join(SCHEDULES.aliases_of(name))
        schedules.add_row(name, aliases, SCHEDULES.get(name).summary)
    methods = _table("training-time methods", "name", "kind", "what it does")
    for name in METHODS.names():
        method = METHODS.get(name)
        methods.add_row(name, method.kind, method.summary)
    searchers = _table("allocation searchers", "name", "objectives", "how it searches")
    for name in SEARCHERS.names():
        searcher = SEARCHERS.get(name)
        objectives = "several" if searcher.multi_objective else "one"
        searchers.add_row(name, objectives, searcher.description)
    families = _table("model families", "name", "what prunekit knows about it")
    for name in FAMILIES.names():
        families.add_row(name, FAMILIES.get(name).summary)
    specs = _table("model specs", "spec", "builds")
    for spec, builds in MODEL_SPECS:
        specs.add_row(spec, builds)
    rules = _table("layer rules", "name", "layer types")
    for name in LAYER_RULES.names():
        rules.add_row(name, ", ".join(t.__name__ for t in LAYER_RULES.get(name).types))
    models = _table("models", "name", "aliases")
    for name in MODELS.names():
        models.add_row(name, ", ".join(MODELS.aliases_of(name)))
    datasets = _table("datasets", "name")
    for name in DATASETS.names():
        datasets.add_row(name)
    return [
        estimators,
        granularities,
        schedules,
        methods,
        searchers,
        families,
        specs,
        rules,
        models,
        datasets,
    ]


def job_tables(report: JobReport) -> list[Table]:
    tables = [before_after_table(report.before, report.pruned, title="dense vs one-shot pruned")]
    if report.after is not None:
        tables.append(
            before_after_table(report.before, report.after, title="dense vs pruned + fine-tuned")
        )
    if report.result.structural:
        tables.append(units_table(report.result))
    else:
        tables.append(layer_table(report.result.model, title="sparsity per layer"))
    return tables


def units_table(result: PruneResult) -> Table:
    """Units kept per group after structural pruning, the most cut first."""
    table = Table("group", "units", "kept", "kept %", title="units kept per group")
    for name, total, kept in sorted(result.layer_rows(), key=lambda r: r[2] / max(r[1], 1)):
        table.add_row(name, f"{total:,}", f"{kept:,}", f"{kept / max(total, 1):.0%}")
    return table


def scores_table(result: ScoreResult) -> Table:
    table = Table(
        "group",
        "units",
        "min",
        "median",
        "max",
        "mean",
        title=f"{result.estimator.name} scores at {result.granularity.spec()} granularity",
    )
    for group in result.groups:
        s = result.scores[group.name]
        finite = s[torch.isfinite(s)]
        if finite.numel() == 0:
            table.add_row(group.name, str(group.n_units), "-", "-", "-", "-")
            continue
        stats = (finite.min(), finite.median(), finite.max(), finite.mean())
        table.add_row(group.name, str(group.n_units), *(f"{float(v):.4g}" for v in stats))
    return table
