"""A recipe's ``search:`` section: how ``prunekit search RECIPE`` searches the allocation.

The budget is the recipe's ``prune.target`` (``{macs: 0.25}``, ``{latency: 0.5, runtime:
torch}`` or ``{size: 0.5}``); the rest of ``prune:`` is the base configuration (granularity,
estimator, exclusions, floors) whose per-layer sparsities the search chooses. A ``finetune:``
section (epochs or max_steps, optimizer, lr) fine-tunes the chosen model afterwards, over
``finetune.processes`` local processes (DDP). :func:`split_recipe` separates the parts and
validates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prunekit.errors import ConfigError
from prunekit.recipe import Recipe, parse_recipe
from prunekit.validation import as_value_error, describe_errors


class SearchSpec(BaseModel):
    """The options of :func:`prunekit.search.search` a recipe can set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    searcher: str = Field("tpe", description="random, tpe, nsga2, cmaes, ga or amc.")
    trials: int = Field(20, ge=1, description="Finished trials wanted in the study.")
    workers: int = Field(1, ge=1, description="Ray workers (1: run in this process).")
    address: str | None = Field(None, description="Ray cluster address to join.")
    storage: str | None = Field(
        None, description="Journal file, database URL or :memory: (default: under output.dir)."
    )
    study_name: str | None = None
    objective: str = Field("proxy", description="proxy, finetune, proxy-loss or finetune-loss.")
    n_batches: int = Field(8, ge=1, description="Calibration batches (scoring, BatchNorm).")
    eval_batches: int | None = Field(None, ge=1, description="Held-out batches per trial.")
    finetune_steps: int = Field(20, ge=1)
    finetune_lr: float = Field(1e-3, gt=0)
    tolerance: float = Field(0.02, ge=0, lt=1)
    threads: int | None = Field(None, ge=1)
    space: str = Field("group", description="group (a keep ratio per layer) or stage.")
    stages: int | dict[str, str] | None = Field(
        None, description="Stage of each layer: a name-prefix depth, or {glob: stage}."
    )
    processes: int = Field(1, ge=1, description="Processes fine-tuning the chosen model (DDP).")
    target: dict[str, float | str] | None = Field(
        None, description="The budget, when prune: cannot hold it (size)."
    )

    @field_validator("space")
    @classmethod
    def _space(cls, value: str) -> str:
        from prunekit.search.stages import check_space

        return as_value_error(check_space, value)

    @field_validator("searcher")
    @classmethod
    def _searcher(cls, value: str) -> str:
        from prunekit.search.searchers import SEARCHERS

        as_value_error(SEARCHERS.get, value)
        return value.strip().lower()

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: str) -> str:
        from prunekit.search.objectives import OBJECTIVES

        if value not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {value!r}")
        return value


def split_recipe(
    data: Any, source: str = "<recipe>", overrides: Mapping[str, Any] | None = None
) -> tuple[Recipe, SearchSpec]:
    """The recipe (without ``search:``) and its search section, with ``overrides`` (command
    line options) on top; ``prune.target`` is the budget (a ``size`` budget moves to the search
    section: ``prune:`` has no size target), and ``finetune.processes`` moves to
    ``search.processes``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a recipe must be a mapping, got {type(data).__name__}")
    rest = {k: v for k, v in data.items() if k != "search"}
    section = dict(data.get("search") or {})
    finetune = dict(rest.get("finetune") or {})
    if "processes" in finetune:
        section["processes"] = finetune.pop("processes")
        rest["finetune"] = finetune
    prune = dict(rest.get("prune") or {})
    if isinstance(prune.get("target"), Mapping) and "size" in prune["target"]:
        section["target"] = dict(prune.pop("target"))
        rest["prune"] = {**prune, "sparsity": 0.0}
    section.update(overrides or {})
    try:
        spec = SearchSpec.model_validate(section)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid search section: {describe_errors(err)}") from None
    recipe = parse_recipe(rest, source)
    if recipe.prune.target is None and spec.target is None:
        raise ConfigError(
            f"{source}: prune.target is the search's budget; set it, e.g. target: {{macs: 0.25}}"
        )
    return recipe, spec


def budget_of(recipe: Recipe, spec: SearchSpec) -> dict[str, float | str]:
    """The search's budget: ``search.target``, else ``prune.target``."""
    return dict(spec.target or recipe.prune.target or {})


def default_storage(recipe: Recipe, spec: SearchSpec) -> str:
    """The study's journal file: ``search.storage``, or ``<output.dir>/search.journal``."""
    return spec.storage or str(Path(recipe.output.dir) / "search.journal")
