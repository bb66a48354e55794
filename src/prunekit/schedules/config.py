"""The pruning configuration of a schedule: a :class:`~prunekit.config.PruneConfig` without a
sparsity.

A schedule (:class:`~prunekit.schedules.Stepper`, :func:`~prunekit.schedules.prune_further`,
:func:`~prunekit.methods.lottery.find_ticket`) groups, scores and selects units with the same
options as :func:`prunekit.prune`, validated by the same :class:`~prunekit.config.PruneConfig`,
but the schedule decides how much is removed at each step. :func:`schedule_config` checks a
config or mapping for that use:

- ``sparsity``, ``threshold``, ``target`` and ``overrides`` are refused (the schedule sets the
  sparsity), as are ``surgery=True`` (a schedule masks; :func:`remove_masked_units` cuts the
  masked units after training), ``round_to="auto"`` (it needs a runtime measurement that a
  schedule does not make) and granularity ``layer`` (whole blocks go by surgery, not masks);
- ``min_keep_fraction`` defaults to 0, not 0.1: a schedule reaches exactly
  ``round(sparsity * units)`` removed units, so the structural floor of one-shot pruning is off
  unless asked for;
- ``scope`` and ``normalize`` keep their ``auto`` defaults, resolved per step by
  :attr:`PruneConfig.resolved_scope` / :attr:`PruneConfig.resolved_normalize` exactly as in
  :func:`prunekit.prune` (global ranking without normalisation for weights, N:M and blocks;
  per-layer for channels);
- the options about one-shot surgery and measurement (``verify``, ``verify_exhaustive``,
  ``atol``, ``metrics``, ``latency``, ``heads``, ``recalibrate``) do not apply to masks set
  during training and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunekit.config import PruneConfig, make_config
from prunekit.errors import ConfigError

SCHEDULE_DECIDES: tuple[str, ...] = ("sparsity", "threshold", "target", "overrides")
"""Options that say how much to remove: the schedule says it, so a config may not."""

SCHEDULE_DEFAULTS: dict[str, Any] = {"min_keep_fraction": 0.0}
"""Where a schedule's default differs from :func:`prunekit.prune`'s (see the module docstring)."""

ScheduleConfig = PruneConfig | Mapping[str, Any] | None
"""What a schedule takes as its pruning configuration: a config, a mapping of its options, or
``None`` for the defaults."""

_PLACEHOLDER = 0.0
"""A sparsity that lets :class:`PruneConfig` validate the other options; never used to prune."""


def schedule_config(
    config: ScheduleConfig = None, *, where: str = "schedule_config()"
) -> PruneConfig:
    """``config`` validated as a schedule's pruning configuration (see the module docstring);
    a refused option or a bad value is a :class:`ConfigError` that starts with ``where``."""
    if isinstance(config, PruneConfig):
        data = config.model_dump(exclude_unset=True)
    elif config is None:
        data = {}
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ConfigError(
            f"{where}: the pruning config must be a PruneConfig or a mapping of its options, "
            f"got {type(config).__name__}"
        )
    for name in SCHEDULE_DECIDES:
        if data.get(name) not in (None, {}):
            raise ConfigError(
                f"{where}: the schedule decides the sparsity; remove {name!r} from the config"
            )
    data = {**SCHEDULE_DEFAULTS, **data, "sparsity": _PLACEHOLDER}
    checked = make_config(None, data, where=where)
    _refuse_one_shot_options(checked, where)
    return checked.model_copy(update={"sparsity": None})


def _refuse_one_shot_options(config: PruneConfig, where: str) -> None:
    if config.is_layer:
        raise ConfigError(
            f"{where}: granularity 'layer' removes whole blocks by surgery; a schedule prunes "
            "through masks (use prunekit.prune for blocks)"
        )
    if config.surgery:
        raise ConfigError(
            f"{where}: surgery=True: a schedule masks during training; cut the masked units "
            "afterwards with remove_masked_units(model, groups)"
        )
    if config.round_to == "auto":
        raise ConfigError(
            f"{where}: round_to='auto' needs a runtime measurement that a schedule does not "
            "make; give an integer width step"
        )
