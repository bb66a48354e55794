"""A recipe's ``search:`` section: how ``prunekit search RECIPE`` searches the allocation.

The budget is the recipe's ``prune.target`` (``{macs: 0.25}``, ``{latency: 0.5, runtime:
torch}`` or ``{size: 0.5}``); the rest of ``prune:`` is the base configuration (granularity,
estimator, exclusions, floors) whose per-layer sparsities the search chooses. A ``finetune:``
section (epochs or max_steps, optimizer, lr) fine-tunes the chosen model afterwards, over
``finetune.processes`` local processes (DDP). :func:`split_recipe` separates the parts and
validates them; the ``search:`` section takes exactly the options of
:class:`~prunekit.search.config.SearchConfig`, the one configuration of a search in Python, in
recipes and on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from prunekit.errors import ConfigError
from prunekit.recipe import Recipe, parse_recipe
from prunekit.search.config import SearchConfig
from prunekit.validation import describe_errors


class SearchSpec(SearchConfig):
    """A recipe's ``search:`` section: the :class:`SearchConfig` options, plus the budget when
    ``prune:`` cannot hold it (a size budget)."""

    target: dict[str, float | str] | None = Field(
        None, description="The budget, when prune: cannot hold it (size)."
    )

    @property
    def config(self) -> SearchConfig:
        """The search options alone, as :func:`prunekit.search.search` takes them."""
        return SearchConfig.model_validate(self.model_dump(exclude={"target"}, exclude_unset=True))


def split_recipe(
    data: Any, source: str = "<recipe>", overrides: Mapping[str, Any] | None = None
) -> tuple[Recipe, SearchSpec]:
    """The recipe (without ``search:``) and its search section, with ``overrides`` (command
    line options) on top; ``prune.target`` is the budget (a ``size`` budget moves to the search
    section: ``prune:`` has no size target), ``finetune.processes`` moves to
    ``search.processes``, and the recipe's ``seed`` is the search's unless ``search.seed`` is
    set."""
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
    if "seed" in data:
        section.setdefault("seed", data["seed"])
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
