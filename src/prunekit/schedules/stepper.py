"""Apply a schedule during training: prune further whenever the schedule's target rises.

:func:`prune_further` is ``prunekit.prune(..., inplace=True)`` for a model that may already be
masked: units removed earlier are ranked below every other unit, so they stay removed and the
model ends with exactly ``round(sparsity * units)`` units removed (per layer or globally), not
the union of two unrelated selections. :class:`Stepper` calls it at the right steps and is a
plain ``(step, model)`` callable, the ``on_step`` hook of :func:`prunekit.train.train`. With
structural groups (coupled channels), :func:`remove_masked_units` turns the masked model at the
end of training into the physically smaller one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from prunekit.config import make_config
from prunekit.core.groups import Group, Scores, selection_to_masks
from prunekit.core.scores import Normalization, normalize_scores
from prunekit.core.selection import select
from prunekit.errors import ConfigError, check_sparsity
from prunekit.estimators import as_scoring_data
from prunekit.estimators.data import LossFn
from prunekit.granularity import build_groups, get_granularity
from prunekit.io.fingerprint import Description, changed_fields, describe
from prunekit.masks import apply_masks, bake_masks, clone_model, masks_of
from prunekit.result import PruneResult
from prunekit.schedules.config import ScheduleConfig, schedule_config
from prunekit.schedules.formulas import Schedule
from prunekit.surgery import Plan, apply_surgery


def removed_units(model: nn.Module, groups: Sequence[Group]) -> dict[str, torch.Tensor]:
    """Per group, which units the model's current masks remove (all of the root slice is 0)."""
    masks = masks_of(model)
    removed = {}
    for group in groups:
        root = group.root
        mask = masks.get(root.tensor)
        if mask is None:
            removed[group.name] = torch.zeros(group.n_units, dtype=torch.bool)
        else:
            removed[group.name] = root.view.reduce(mask.float(), "max").cpu() == 0
    return removed


def rank_remaining(
    scores: Scores, removed: Mapping[str, torch.Tensor], normalize: Normalization = "none"
) -> Scores:
    """Scores for pruning a masked model further: normalised per group over the units still
    present (as the physically pruned model's would be), and every ``removed`` unit ranked
    below every other unit of every group, so that it stays removed."""
    return _rank_removed_last(normalize_scores(scores, normalize, exclude=removed), removed)


def _rank_removed_last(scores: Scores, removed: Mapping[str, torch.Tensor]) -> Scores:
    """Scores in which every removed unit ranks below every other unit of every group."""
    values = torch.cat([s.float().flatten().cpu() for s in scores.values()])
    floor = float(values.min()) - float(values.max() - values.min()) - 1.0
    return {
        name: torch.where(removed[name].to(s.device), torch.full_like(s, floor), s)
        for name, s in scores.items()
    }


def prune_further(
    model: nn.Module,
    sparsity: float,
    config: ScheduleConfig = None,
    *,
    data: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    groups: Sequence[Group] | None = None,
    where: str = "prune_further()",
) -> PruneResult:
    """Mask ``model`` in place so that exactly ``round(sparsity * units)`` units are removed,
    keeping every unit already removed removed. ``config`` says how units are grouped, scored
    and selected (a :class:`~prunekit.config.PruneConfig` or a mapping of its options, checked
    by :func:`schedule_config`); ``groups`` (e.g. structural groups from
    :func:`prunekit.graph.build_structural_groups`) replace the granularity's own groups."""
    sparsity = check_sparsity(sparsity)
    base = schedule_config(config, where=where)
    step = make_config(base, {"sparsity": sparsity}, where=where, estimator_instance=True)
    gran = get_granularity(step.granularity)
    est = step.build_estimator()
    if groups is None:
        groups = build_groups(model, gran, step.include, step.exclude)
    groups = list(groups)
    scoring_data = as_scoring_data(data, loss_fn, step.n_batches)
    raw = est.score(model, groups, scoring_data)
    scores = rank_remaining(
        {g.name: raw[g.name] for g in groups}, removed_units(model, groups), step.resolved_normalize
    )
    # the scores are normalised over the units still present above; select must not redo it
    selection = select(scores, groups, replace(step.selection(), normalize="none"))
    masks = selection_to_masks(groups, selection)
    apply_masks(model, masks)
    return PruneResult(
        model=model, config=step, groups=groups, scores=raw, selection=selection,
        estimator=est, granularity=gran.spec(), masks=masks,
    )  # fmt: skip


def remove_masked_units(model: nn.Module, groups: Sequence[Group]) -> tuple[nn.Module, Plan]:
    """A physically smaller copy of ``model`` without the units its masks remove, and the plan.

    ``groups`` are the structural groups the masks were chosen on (those given to
    :class:`Stepper` or :func:`prune_further`): a unit whose root slice is masked out is cut
    from every member of its group, so the copy computes what the masked model computes (each
    member slice of a removed unit is zero). ``model`` keeps its masks; the copy has none.
    """
    keep = {name: ~removed for name, removed in removed_units(model, groups).items()}
    baked = clone_model(model)
    bake_masks(baked)
    return apply_surgery(baked, groups, keep)


class Stepper:
    """Prunes a model on a schedule: call it after every optimizer step with ``(step, model)``.

    When ``schedule(step)`` exceeds the sparsity last applied, the model is pruned further (in
    place, through masks) to the new target; otherwise nothing happens. ``config`` says how
    units are grouped, scored and selected: a :class:`~prunekit.config.PruneConfig` or a mapping
    of its options, without a sparsity (see :func:`schedule_config`). Its state
    (:meth:`state_dict`) is the sparsity applied so far and the settings it was applied with,
    so a resumed job continues where it stopped and a job with other settings is refused.
    """

    def __init__(
        self,
        schedule: Schedule,
        config: ScheduleConfig = None,
        *,
        data: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        groups: Sequence[Group] | None = None,
    ) -> None:
        self.schedule = schedule
        self.config = schedule_config(config, where="Stepper()")
        self.data = data
        self.loss_fn = loss_fn
        self.groups = None if groups is None else list(groups)
        self.applied = 0.0
        self.history: list[tuple[int, float]] = []

    def __call__(self, step: int, model: nn.Module) -> PruneResult | None:
        target = self.schedule(step)
        if target <= self.applied:
            return None
        result = prune_further(
            model, target, self.config, data=self.data, loss_fn=self.loss_fn,
            groups=self.groups, where="Stepper()",
        )  # fmt: skip
        self.applied = target
        self.history.append((step, target))
        return result

    @property
    def done(self) -> bool:
        return self.applied >= self.schedule.final_sparsity

    def settings(self) -> Description:
        """What the pruning so far depends on: the schedule and the config, flat (``describe``)."""
        return describe({"schedule": self.schedule, "config": self.config})

    def state_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "history": [list(h) for h in self.history],
            "settings": self.settings(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; a state saved with another schedule or config is refused
        with the changed fields named (its masks were chosen with those settings)."""
        recorded = state.get("settings")
        if recorded is None:
            raise ConfigError(
                "Stepper.load_state_dict: the state records no settings, so it cannot be "
                "checked against this Stepper's schedule and config"
            )
        changes = changed_fields(recorded, self.settings())
        if changes:
            raise ConfigError(
                f"Stepper.load_state_dict: the state was saved with other settings "
                f"({'; '.join(changes)}); resume with the same schedule and config"
            )
        self.applied = float(state["applied"])
        self.history = [(int(s), float(v)) for s, v in state.get("history", [])]
