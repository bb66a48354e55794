"""prunekit's arms of benchmarks/training_channels.py: structural groups, scores normalised per
group, the global selection that meets a MAC target (bisection on the number of channels
removed), surgery, and the three schedules (one-shot, iterative, gradual)."""

from __future__ import annotations

from collections.abc import Sequence

from channels_setup import Arm, Context, recalibrate, scoring_data, tune
from torch import nn

from prunekit.core.groups import Group, Scores, Selection, selection_to_masks
from prunekit.core.selection import SelectionConfig, select
from prunekit.estimators import ScoringData, get_estimator
from prunekit.graph import build_structural_groups
from prunekit.masks import apply_masks, clone_model
from prunekit.measure import count_macs
from prunekit.schedules import Polynomial, rank_remaining, remove_masked_units, removed_units
from prunekit.surgery import apply_surgery


def score(
    name: str, model: nn.Module, groups: Sequence[Group], data: ScoringData, how: str
) -> Scores:
    """Scores of estimator ``name``, normalised per group, with every unit the model's masks
    already remove ranked below every other unit."""
    raw = get_estimator(name).score(model, groups, data)
    scores = {g.name: raw[g.name].float() for g in groups}
    return rank_remaining(scores, removed_units(model, groups), how)  # type: ignore[arg-type]


def select_for_macs(
    ctx: Context,
    reference: nn.Module,
    groups: Sequence[Group],
    scores: Scores,
    target: float,
    at_least: int = 0,
) -> Selection:
    """The global selection removing the fewest channels, and at least ``at_least``, whose
    pruned ``reference`` has at most ``target`` MACs (bisection on the number removed: MACs
    fall as more units go). A gradual schedule passes the number its masks already remove:
    those rank lowest, so the selection keeps them removed instead of reviving masked units."""
    total = sum(g.n_units for g in groups)
    round_to = ctx.config.get("round_to", 1)

    def attempt(n: int) -> tuple[int, Selection]:
        config = SelectionConfig(
            sparsity=n / total, round_to=round_to, min_keep=1, min_keep_fraction=0.0
        )
        selection = select(scores, groups, config)
        pruned, _ = apply_surgery(reference, groups, selection)
        return count_macs(pruned, ctx.example).total, selection

    lo, hi = at_least, total - len(groups)  # min_keep=1: every group keeps a unit
    macs, best = attempt(hi)
    if macs > target:
        raise RuntimeError(f"cannot reach {target:.0f} MACs: {macs} with all but one unit removed")
    while lo < hi:
        mid = (lo + hi) // 2
        macs, selection = attempt(mid)
        if macs <= target:
            hi, best = mid, selection
        else:
            lo = mid + 1
    return best


def surgery_to(ctx: Context, model: nn.Module, arm: Arm, target: float, seed: int) -> nn.Module:
    """Score ``model``, remove channels until it has at most ``target`` MACs, recalibrate BN.
    ``model`` itself is left as it was (surgery builds a new one)."""
    groups = build_structural_groups(model, ctx.example)
    scores = score(arm.estimator, model, groups, scoring_data(ctx, seed), ctx.config["normalize"])
    selection = select_for_macs(ctx, model, groups, scores, target)
    pruned, _ = apply_surgery(model, groups, selection)
    recalibrate(ctx, pruned, seed)
    return pruned


class GradualMacs:
    """``on_step`` callable: masks channels so the MACs follow the cubic schedule of Zhu & Gupta
    2017 (``Polynomial``) from dense to ``ratio`` times fewer (geometric in the ratio)."""

    def __init__(self, ctx: Context, arm: Arm, ratio: float, steps: int, seed: int) -> None:
        gradual = ctx.config["gradual"]
        end = max(int(steps * gradual["end_fraction"]), 1)
        self.schedule = Polynomial(
            0.5, begin_step=0, end=end, frequency=max(end // gradual["updates"], 1)
        )
        self.ctx, self.arm, self.ratio = ctx, arm, ratio
        self.reference = clone_model(ctx.dense)
        self.groups = build_structural_groups(self.reference, ctx.example)
        self.data = scoring_data(ctx, seed)
        self.applied = 0.0
        self.selection: Selection | None = None

    def __call__(self, step: int, model: nn.Module) -> None:
        progress = self.schedule(step) / self.schedule.final_sparsity
        if progress <= self.applied:
            return
        scores = score(
            self.arm.estimator, model, self.groups, self.data, self.ctx.config["normalize"]
        )
        target = self.ctx.dense_macs / self.ratio**progress
        gone = sum(int(r.sum()) for r in removed_units(model, self.groups).values())
        self.selection = select_for_macs(
            self.ctx, self.reference, self.groups, scores, target, at_least=gone
        )
        apply_masks(model, selection_to_masks(self.groups, self.selection))
        self.applied = progress

    def finish(self, model: nn.Module) -> nn.Module:
        """The physically smaller model without the masked channels (exact: they output zero)."""
        assert self.selection is not None and self.applied == 1.0
        pruned, _ = remove_masked_units(model, self.groups)
        return pruned


def prunekit_arm(ctx: Context, arm: Arm, ratio: float, seed: int) -> nn.Module:
    """``ratio`` times fewer MACs than the dense model by ``arm.schedule``, with ``budget_steps``
    optimizer steps of recovery in all."""
    budget = ctx.config["budget_steps"]
    if arm.schedule == "one-shot":
        model = surgery_to(ctx, ctx.dense, arm, ctx.dense_macs / ratio, seed)
        tune(ctx, model, budget, arm, seed)
        return model
    if arm.schedule == "iterative":
        rounds = ctx.config["iterative_rounds"]
        model = ctx.dense
        for k in range(1, rounds + 1):
            model = surgery_to(ctx, model, arm, ctx.dense_macs / ratio ** (k / rounds), seed + k)
            steps = budget // rounds + (budget % rounds if k == rounds else 0)
            tune(ctx, model, steps, arm, seed + k)
        return model
    if arm.schedule == "gradual":
        model = clone_model(ctx.dense)
        stepper = GradualMacs(ctx, arm, ratio, budget, seed)
        tune(ctx, model, budget, arm, seed, on_step=stepper)
        pruned = stepper.finish(model)
        recalibrate(ctx, pruned, seed)
        return pruned
    raise ValueError(f"unknown schedule {arm.schedule!r}")
