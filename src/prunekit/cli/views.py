"""Rich tables the CLI prints: registries, job results, score summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from rich.table import Table

from prunekit.report.tables import before_after_table, layer_table

if TYPE_CHECKING:
    from prunekit.api import ScoreResult
    from prunekit.pipeline import JobReport


def registry_tables() -> list[Table]:
    """One table per registry, with the names users type."""
    from prunekit.data import DATASETS
    from prunekit.estimators import ESTIMATORS
    from prunekit.estimators.blocks import BLOCK_ESTIMATORS
    from prunekit.granularity import GRANULARITIES
    from prunekit.llm import LLM_METHODS
    from prunekit.models import MODELS
    from prunekit.ops import LAYER_RULES
    from prunekit.surgery.layers import LAYER_GRANULARITIES

    estimators = Table("name", "needs data", "units", "what it computes", title="estimators")
    for name in ESTIMATORS.names():
        cls = ESTIMATORS.get(name)
        units = "neurons/channels" if cls.output_units_only else "any"
        units = "channels (structural)" if cls.structural_only else units
        estimators.add_row(name, "yes" if cls.needs_data else "no", units, cls.summary)
    for name in BLOCK_ESTIMATORS.names():
        cls = BLOCK_ESTIMATORS.get(name)
        needs = "yes" if cls.needs_data else "no"
        estimators.add_row(name, needs, "blocks (layer)", cls.summary)
    granularities = Table("name", "aliases", "spec examples", title="granularities")
    examples = {"nm": "2:4, 4:8, nm:1:4", "block": "block:1x4, block:4x4"}
    for name in GRANULARITIES.names():
        granularities.add_row(
            name, ", ".join(GRANULARITIES.aliases_of(name)), examples.get(name, name)
        )
    for name in LAYER_GRANULARITIES:
        granularities.add_row(name, "", f"{name} (whole residual blocks, by surgery)")
    rules = Table("name", "layer types", title="layer rules")
    for name in LAYER_RULES.names():
        rules.add_row(name, ", ".join(t.__name__ for t in LAYER_RULES.get(name).types))
    models = Table("name", "aliases", title="models")
    for name in MODELS.names():
        models.add_row(name, ", ".join(MODELS.aliases_of(name)))
    datasets = Table("name", title="datasets")
    for name in DATASETS.names():
        datasets.add_row(name)
    llm = Table("name", title="language-model methods (prunekit llm prune --method)")
    for name in LLM_METHODS.names():
        llm.add_row(name)
    return [estimators, granularities, rules, models, datasets, llm]


def job_tables(report: JobReport) -> list[Table]:
    tables = [before_after_table(report.before, report.pruned, title="dense vs one-shot pruned")]
    if report.after is not None:
        tables.append(
            before_after_table(report.before, report.after, title="dense vs pruned + fine-tuned")
        )
    tables.append(layer_table(report.result.model, title="sparsity per layer"))
    return tables


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
