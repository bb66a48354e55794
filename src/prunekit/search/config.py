""":class:`SearchConfig`: how :func:`prunekit.search.search` searches, validated once.

The same object is built from the keyword options of a Python call, from a recipe's
``search:`` section (:mod:`prunekit.search.spec`) and from ``prunekit search``'s options, as
:class:`~prunekit.config.PruneConfig` is for pruning. The budget (``target``) and a callable
objective are arguments of :func:`~prunekit.search.search`, not options: a function cannot live
in a recipe, and the budget belongs to the recipe's ``prune:`` section.

:func:`route_options` sends each keyword option of ``search(...)`` to the configuration it
belongs to: a :class:`SearchConfig` field to the search, any other to the base
:class:`~prunekit.config.PruneConfig` (granularity, estimator, exclude, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunekit.config import PruneConfig
from prunekit.errors import ConfigError, closest
from prunekit.validation import as_value_error, describe_errors, error_class


class SearchConfig(BaseModel):
    """The options of an allocation search: searcher, space, trials, workers, storage,
    objective, data split, fine-tuning, seed and tolerance. Frozen: derive a changed copy
    with :meth:`replace`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    searcher: str = Field(
        "tpe", description="random, tpe, nsga2, cmaes, ga or amc (prunekit.search.SEARCHERS)."
    )
    space: str = Field("group", description="group (a keep ratio per layer) or stage.")
    stages: int | dict[str, str] | str | None = Field(
        None,
        description="With space=stage, each layer's stage: a name-prefix depth, {glob: stage}, "
        "or 'resolution' (layers with output feature maps of one size share a stage); default: "
        "the parent module's name.",
    )
    trials: int = Field(20, ge=1, description="Finished trials wanted in the study.")
    workers: int = Field(1, ge=1, description="Ray workers (1: run in this process).")
    address: str | None = Field(None, description="Ray cluster address to join.")
    storage: str | None = Field(
        None,
        description="Journal file, database URL or :memory: (default: a journal under "
        "runs/search, or output.dir from the command line).",
    )
    study_name: str | None = Field(
        None,
        description="Default: <searcher>-<metric><keep>-<objective>[-stage[-<rule>]], the rule "
        "being resolution, depth<d>, or map<hash> of a mapping.",
    )
    objective: str = Field(
        "proxy",
        description="proxy, finetune, proxy-loss or finetune-loss (a callable objective is an "
        "argument of search(), which then ignores this).",
    )
    n_batches: int = Field(8, ge=1, description="Calibration batches (scoring, BatchNorm).")
    eval_batches: int | None = Field(
        None, ge=1, description="Held-out batches per trial (default n_batches)."
    )
    finetune_steps: int = Field(20, ge=1, description="Steps of the finetune objectives.")
    finetune_lr: float = Field(1e-3, gt=0, description="Learning rate of those steps.")
    seed: int = Field(0, description="Seed of the searcher and the fine-tuning objectives.")
    tolerance: float = Field(
        0.02, ge=0, lt=1, description="Fraction of the budget a candidate may leave unspent."
    )
    start_uniform: bool = Field(
        False,
        description="Make the first trial of a new study the uniform allocation (every searched "
        "parameter at 1.0, projected onto the budget: each layer the same fraction of the way "
        "to its floor): the best trial then scores at least as well as uniform pruning by the "
        "objective, and SearchResult.uniform reports it. Off by default: in the allocation "
        "benchmarks it did not raise the accuracy after fine-tuning (docs/search.md).",
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads per trial (Ray workers: 1 unless given)."
    )
    confirm: bool = Field(
        True, description="With a latency budget, time the best trial against the dense model."
    )
    processes: int = Field(
        1, ge=1, description="Processes fine-tuning the chosen model (DDP; command line only)."
    )

    @model_validator(mode="before")
    @classmethod
    def _stages_imply_stage_space(cls, data: Any) -> Any:
        """``stages`` without ``space`` means ``space="stage"``; with ``space="group"`` (one
        keep ratio per layer) it would be ignored, so it is refused."""
        if not isinstance(data, Mapping) or data.get("stages") is None:
            return data
        space = data.get("space")
        if space is None:
            return {**data, "space": "stage"}
        if str(space).strip().lower() == "group":
            raise ValueError(
                "stages applies to space='stage' (one keep ratio per stage); with space='group' "
                "every layer has its own: drop stages or set space='stage'"
            )
        return data

    @field_validator("storage", mode="before")
    @classmethod
    def _storage(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @field_validator("space")
    @classmethod
    def _space(cls, value: str) -> str:
        from prunekit.search.stages import check_space

        return str(as_value_error(check_space, value))

    @field_validator("stages", mode="before")
    @classmethod
    def _stages(cls, value: Any) -> Any:
        from prunekit.search.stages import check_stages

        return as_value_error(check_stages, value)

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

    @property
    def held_batches(self) -> int:
        """Held-out batches per trial: ``eval_batches``, else ``n_batches``."""
        return self.eval_batches or self.n_batches

    def replace(self, **changes: Any) -> SearchConfig:
        """A validated copy with ``changes`` applied."""
        return make_search_config(self, changes, where="SearchConfig.replace()")


SEARCH_OPTIONS: tuple[str, ...] = tuple(SearchConfig.model_fields)
"""The names of the search options, in declaration order."""


def make_search_config(
    base: SearchConfig | Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
    *,
    where: str = "search()",
) -> SearchConfig:
    """``base`` (a config, a mapping of options or the defaults) with ``changes`` applied and
    validated; an unknown option or a bad value is a :class:`ConfigError` naming it."""
    data = base.model_dump(exclude_unset=True) if isinstance(base, SearchConfig) else {}
    if base is not None and not isinstance(base, SearchConfig):
        if isinstance(base, PruneConfig):
            raise ConfigError(f"{where}: config is a SearchConfig; pass a PruneConfig as prune=")
        if not isinstance(base, Mapping):
            raise ConfigError(
                f"{where}: config must be a SearchConfig or a mapping of search options, "
                f"got {type(base).__name__}"
            )
        data = dict(base)
    data.update(changes or {})
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as err:
        raise error_class(err)(f"{where}: {describe_errors(err)}") from None


def route_options(
    options: Mapping[str, Any], where: str = "search()"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` split into search options (:class:`SearchConfig` fields) and pruning options
    (:class:`~prunekit.config.PruneConfig` fields); a name that is neither is a
    :class:`ConfigError` naming it and listing both."""
    prune_fields = set(PruneConfig.model_fields) | {"calibration_batches"}
    searched: dict[str, Any] = {}
    pruned: dict[str, Any] = {}
    for name, value in options.items():
        if name in SearchConfig.model_fields:
            searched[name] = value
        elif name in prune_fields:
            pruned[name] = value
        else:
            hint = closest(name, [*SEARCH_OPTIONS, *PruneConfig.model_fields])
            raise ConfigError(
                f"{where} got an unknown option {name!r}{hint}; search options: "
                f"{', '.join(SEARCH_OPTIONS)}; pruning options: "
                f"{', '.join(PruneConfig.model_fields)}"
            )
    return searched, pruned


__all__ = ["SEARCH_OPTIONS", "SearchConfig", "make_search_config", "route_options"]
