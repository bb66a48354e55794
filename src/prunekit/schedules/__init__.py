"""Schedules (sparsity as a pure function of the step) and the :class:`Stepper` that applies one.

``Polynomial(0.9, end=1000, frequency=100)`` is the cubic schedule of Zhu & Gupta 2017;
``Stepper(Polynomial(...), {"granularity": "channel"})`` is a plain ``(step, model)`` callable for
any training loop (``prunekit.train.train(..., on_step=stepper)``) that prunes through prunekit's
estimators, selection and masks whenever the schedule's target rises. Its pruning options are
those of :class:`prunekit.config.PruneConfig`, less the sparsity (:func:`schedule_config`).
"""

from typing import Any

from prunekit.registry import Registry
from prunekit.schedules.config import SCHEDULE_DECIDES, ScheduleConfig, schedule_config
from prunekit.schedules.formulas import Constant, Iterative, OneShot, Polynomial, Schedule, Spacing
from prunekit.schedules.stepper import (
    Stepper,
    prune_further,
    rank_remaining,
    remove_masked_units,
    removed_units,
)

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")
SCHEDULES.register("one-shot", OneShot, aliases=("oneshot",))
SCHEDULES.register("iterative", Iterative)
SCHEDULES.register("polynomial", Polynomial, aliases=("gradual", "agp", "cubic"))
SCHEDULES.register("constant", Constant)


def get_schedule(name: str, **options: Any) -> Schedule:
    """The schedule registered as ``name`` built from ``options`` (``final_sparsity`` first)."""
    return SCHEDULES.get(name)(**options)


__all__ = [
    "SCHEDULES",
    "SCHEDULE_DECIDES",
    "Constant",
    "Iterative",
    "OneShot",
    "Polynomial",
    "Schedule",
    "ScheduleConfig",
    "Spacing",
    "Stepper",
    "get_schedule",
    "prune_further",
    "rank_remaining",
    "remove_masked_units",
    "removed_units",
    "schedule_config",
]
