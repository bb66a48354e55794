"""Channel pruning to 2x and 4x fewer MACs: prunekit estimators x schedules x recovery against
Torch-Pruning's importances, on the same dense model, data and fine-tuning budget, in one run.

    python benchmarks/training_channels.py benchmarks/configs/training_channels.yaml [--quick]

Every arm ends with a physically smaller model (prunekit surgery or Torch-Pruning), measured by
``prunekit.measure.count_macs``. The global channel sparsity that meets a MAC target is found by
bisection on the number of channels removed (prunekit) or on ``pruning_ratio`` (Torch-Pruning).
Every arm gets exactly ``budget_steps`` optimizer steps of fine-tuning (one-shot: all after
pruning; iterative: split over the rounds; gradual: pruning during the first ``end_fraction``),
BatchNorm statistics are recalibrated after every surgery, and distillation arms learn from the
dense model. Writes ``results.json`` (every run and the medians) and ``results.md``.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torch_pruning as tp
from channels_report import markdown, summarise, verdicts
from common import ROOT, environment, parse_args, write_results
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.core.groups import Group, Scores, Selection, selection_to_masks
from prunekit.core.scores import normalize_scores
from prunekit.core.selection import SelectionConfig, select
from prunekit.data import load_dataset, make_loader
from prunekit.estimators import ScoringData, get_estimator
from prunekit.graph import build_structural_groups
from prunekit.io import load, save
from prunekit.masks import apply_masks, bake_masks, clone_model
from prunekit.measure import count_macs
from prunekit.methods import bn_scale_scores
from prunekit.models import build_model
from prunekit.recovery import DistillConfig, FinetuneConfig, finetune, recalibrate_batchnorm
from prunekit.schedules import Polynomial, removed_units
from prunekit.train import evaluate, seed_everything

Scorer = Callable[[nn.Module, Sequence[Group], ScoringData], Scores]


class Arm(NamedTuple):
    library: str  # "prunekit" or "torch-pruning"
    estimator: str
    schedule: str
    recovery: str


class Context(NamedTuple):
    """What every arm of one model shares: config, data, the dense model and its size."""

    config: Mapping[str, Any]
    train_set: TensorDataset
    test_loader: DataLoader[Any]
    dense: nn.Module
    example: Tensor
    dense_macs: int


# --- data and the dense model -------------------------------------------------------------------


class StepLoader:
    """Exactly ``steps`` batches of ``loader``, starting new passes as needed (``len`` is
    ``steps``), so that one fine-tuning epoch is the whole budget and the cosine LR spans it."""

    def __init__(self, loader: DataLoader[Any], steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(
            itertools.chain.from_iterable(itertools.repeat(self.loader)), self.steps
        )


def train_loader(ctx: Context, seed: int) -> DataLoader[Any]:
    return make_loader(ctx.train_set, ctx.config["batch_size"], shuffle=True, seed=seed)


def dense_model(
    config: Mapping[str, Any], spec: Mapping[str, Any], train_set: TensorDataset
) -> nn.Module:
    """Train the dense model once (Adam, cosine LR), cached by its settings under ``cache_dir``."""
    cache = Path(config.get("cache_dir", ROOT.parent / "runs" / "bench" / "dense"))
    kwargs = dict(spec.get("kwargs", {}))
    key = (
        f"{spec['name']}-{config['dataset']}-cos-e{spec['epochs']}-n{config.get('train_limit')}-s0"
    )
    model = build_model(spec["name"], **kwargs)
    if (cache / key / "prunekit.json").exists():
        return load(cache / key, model)
    seed_everything(0)
    loader = make_loader(train_set, config["batch_size"], shuffle=True, seed=0)
    settings = FinetuneConfig(
        epochs=spec["epochs"], lr=spec.get("lr", 1e-3), keep_best=False, progress=False
    )
    finetune(model, loader, None, settings)
    save(model, cache / key, arch={"model": spec["name"], "kwargs": kwargs})
    return model


def accuracy(model: nn.Module, loader: DataLoader[Any]) -> float:
    return 100.0 * evaluate(model, loader).accuracy


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- recovery (shared by both libraries) --------------------------------------------------------


def tune(
    ctx: Context, model: nn.Module, steps: int, arm: Arm, seed: int, on_step: Any = None
) -> None:
    """``steps`` optimizer steps of fine-tuning (cosine LR), distilling from the dense model in
    ``distill`` arms. The test set is never looked at (the last step's weights are kept)."""
    if steps <= 0:
        return
    ft = ctx.config["finetune"]
    settings = FinetuneConfig(
        epochs=1,
        lr=ft["lr"],
        optimizer=ft.get("optimizer", "adam"),
        keep_best=False,
        progress=False,
    )
    distill = arm.recovery == "distill"
    finetune(
        model,
        StepLoader(train_loader(ctx, seed), steps),
        None,
        settings,
        teacher=ctx.dense if distill else None,
        distill=DistillConfig(**ctx.config.get("distill", {})) if distill else None,
        on_step=on_step,
    )


def recalibrate(ctx: Context, model: nn.Module, seed: int) -> None:
    recalibrate_batchnorm(model, train_loader(ctx, seed + 1), max_batches=ctx.config["bn_batches"])


# --- prunekit: scores, MAC-targeted selection, schedules -----------------------------------------


def _bn_scale(model: nn.Module, groups: Sequence[Group], _data: ScoringData) -> Scores:
    return bn_scale_scores(model, groups)


SCORERS: dict[str, Scorer] = {"bn-scale": _bn_scale}
"""Scores that are not in the estimator registry (network-slimming BN scales)."""


def score(
    name: str, model: nn.Module, groups: Sequence[Group], data: ScoringData, how: str
) -> Scores:
    """Scores of ``name`` (an estimator or a :data:`SCORERS` entry), normalised per group, with
    every unit the model's masks already remove ranked below every other unit."""
    scorer = SCORERS.get(name) or get_estimator(name).score
    raw = scorer(model, groups, data)
    scores = normalize_scores({g.name: raw[g.name].float() for g in groups}, how)  # type: ignore[arg-type]
    removed = removed_units(model, groups)
    floor = min(float(s.min()) for s in scores.values()) - 1.0
    return {n: torch.where(removed[n], torch.full_like(s, floor), s) for n, s in scores.items()}


def select_for_macs(
    ctx: Context, reference: nn.Module, groups: Sequence[Group], scores: Scores, target: float
) -> Selection:
    """The global selection removing the fewest channels whose pruned ``reference`` has at most
    ``target`` MACs (bisection on the number removed: MACs fall as more units go)."""
    from prunekit.surgery import apply_surgery

    total = sum(g.n_units for g in groups)
    rounding = SelectionConfig(round_to=ctx.config.get("round_to", 1))

    def attempt(n: int) -> tuple[int, Selection]:
        config = SelectionConfig(sparsity=n / total, round_to=rounding.round_to, min_keep=1)
        selection = select(scores, groups, config)
        pruned, _ = apply_surgery(reference, groups, selection)
        return count_macs(pruned, ctx.example).total, selection

    lo, hi = 0, total - len(groups)  # min_keep=1: every group keeps a unit
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


def scoring_data(ctx: Context, seed: int) -> ScoringData:
    return ScoringData.from_loader(
        train_loader(ctx, seed + 2), n_batches=ctx.config["score_batches"], progress=False
    )


def surgery_to(ctx: Context, model: nn.Module, arm: Arm, target: float, seed: int) -> nn.Module:
    """Score ``model``, remove channels until it has at most ``target`` MACs, recalibrate BN."""
    from prunekit.surgery import apply_surgery

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
        self.selection = select_for_macs(self.ctx, self.reference, self.groups, scores, target)
        apply_masks(model, selection_to_masks(self.groups, self.selection))
        self.applied = progress

    def finish(self, model: nn.Module) -> nn.Module:
        """Make the masks permanent and remove the masked channels (exact: they output zero)."""
        from prunekit.surgery import apply_surgery

        assert self.selection is not None and self.applied == 1.0
        bake_masks(model)
        pruned, _ = apply_surgery(model, self.groups, self.selection)
        return pruned


def prunekit_arm(ctx: Context, arm: Arm, ratio: float, seed: int) -> nn.Module:
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


# --- Torch-Pruning -------------------------------------------------------------------------------

TP_IMPORTANCES: dict[str, Callable[[], Any]] = {
    "magnitude": tp.importance.MagnitudeImportance,
    "taylor": tp.importance.TaylorImportance,
    "bn-scale": tp.importance.BNScaleImportance,
}


def tp_prune(ctx: Context, model: nn.Module, name: str, ratio: float) -> nn.Module:
    """``tp.pruner.MetaPruner`` with global pruning at ``ratio`` on a copy of ``model`` (whose
    ``.grad`` holds the Taylor gradients; the copy keeps them)."""
    pruned = copy.deepcopy(model)
    for source, param in zip(model.parameters(), pruned.parameters(), strict=True):
        param.grad = None if source.grad is None else source.grad.clone()
    classifier = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(
        pruned,
        ctx.example,
        importance=TP_IMPORTANCES[name](),
        global_pruning=True,
        pruning_ratio=ratio,
        ignored_layers=classifier,
        round_to=ctx.config.get("round_to", 1) if ctx.config.get("round_to", 1) > 1 else None,
    )
    pruner.step()
    pruned.zero_grad(set_to_none=True)
    return pruned


def torch_pruning_arm(ctx: Context, arm: Arm, ratio: float, seed: int) -> nn.Module:
    """Torch-Pruning to the MAC target (bisection on ``pruning_ratio``), then the same recovery."""
    scored = copy.deepcopy(ctx.dense).eval()
    if arm.estimator == "taylor":
        for inputs, targets in scoring_data(ctx, seed).batches:
            F.cross_entropy(scored(inputs), targets).backward()
    target = ctx.dense_macs / ratio
    lo, hi, best = 0.0, 1.0, None
    for _ in range(ctx.config.get("tp_bisection_steps", 12)):
        mid = (lo + hi) / 2
        candidate = tp_prune(ctx, scored, arm.estimator, mid)
        if count_macs(candidate, ctx.example).total <= target:
            hi, best = mid, candidate
        else:
            lo = mid
    if best is None:
        raise RuntimeError(f"Torch-Pruning cannot reach {ratio}x fewer MACs")
    recalibrate(ctx, best, seed)
    tune(ctx, best, ctx.config["budget_steps"], arm, seed)
    return best


RUNNERS: dict[str, Callable[[Context, Arm, float, int], nn.Module]] = {
    "prunekit": prunekit_arm,
    "torch-pruning": torch_pruning_arm,
}


# --- the run -------------------------------------------------------------------------------------


def arms(config: Mapping[str, Any]) -> list[Arm]:
    """Each library's grid ``estimators x schedules x recovery`` (Torch-Pruning: one-shot)."""
    found = []
    for library, spec in config["arms"].items():
        schedules = spec.get("schedules", ["one-shot"])
        for est, sched, rec in itertools.product(spec["estimators"], schedules, spec["recovery"]):
            found.append(Arm(library, est, sched, rec))
    return found


def run_model(config: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    train_set = load_dataset(config["dataset"], "train")
    if config.get("train_limit"):
        train_set = TensorDataset(*(t[: config["train_limit"]] for t in train_set.tensors))
    test_loader = make_loader(
        load_dataset(config["dataset"], "test"), 1000, limit=config.get("test_limit")
    )
    start = time.perf_counter()
    dense = dense_model(config, spec, train_set).eval()
    shape = train_set.tensors[0].shape[1:]
    example = torch.zeros(1, *shape)
    ctx = Context(config, train_set, test_loader, dense, example, count_macs(dense, example).total)
    dense_acc = accuracy(dense, test_loader)
    print(
        f"{spec['name']}: dense {dense_acc:.2f}% ({time.perf_counter() - start:.0f} s)", flush=True
    )
    runs = []
    for ratio, arm, seed in itertools.product(config["mac_targets"], arms(config), config["seeds"]):
        start = time.perf_counter()
        seed_everything(seed)
        pruned = RUNNERS[arm.library](ctx, arm, float(ratio), seed)
        row = {
            "model": spec["name"],
            "target": ratio,
            **arm._asdict(),
            "seed": seed,
            "accuracy": accuracy(pruned, test_loader),
            "macs_ratio": ctx.dense_macs / count_macs(pruned, example).total,
            "params_ratio": n_params(dense) / n_params(pruned),
            "seconds": time.perf_counter() - start,
        }
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        runs.append(row)
    return {
        "dense_accuracy": dense_acc,
        "dense_macs": ctx.dense_macs,
        "dense_params": n_params(dense),
        "runs": runs,
    }


def main() -> None:
    config, out = parse_args(__doc__)
    torch.set_num_threads(config.get("threads", 1))
    start = time.perf_counter()
    models = {spec["name"]: run_model(config, spec) for spec in config["models"]}
    summary = [row for name, result in models.items() for row in summarise(name, result)]
    results = {
        "config": config,
        "environment": {**environment(), "torch_pruning": tp.__version__},
        "models": models,
        "summary": summary,
        "verdicts": verdicts(config, summary),
        "seconds": time.perf_counter() - start,
    }
    write_results(out, results, markdown(results))


if __name__ == "__main__":
    main()
