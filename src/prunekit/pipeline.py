"""Run a recipe end to end: data, dense model, measure, prune, fine-tune, measure, save, plot.

This is what ``prunekit prune RECIPE`` and ``prunekit demo`` run. Every stage is a call into the
public API; the job only wires them and reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunekit.api import PruneResult, prune
from prunekit.data import load_dataset, make_loader
from prunekit.io import load, save
from prunekit.measure import ModelStats, layer_sparsity, measure
from prunekit.models import build_model
from prunekit.recipe import DistillSpec, Recipe, TrainSpec
from prunekit.recovery import DistillConfig, train_distilled
from prunekit.report.plots import plot_layer_sparsity, plot_metric_vs_sparsity
from prunekit.surgery import rebuild_hook
from prunekit.surgery.structured import StructuralResult
from prunekit.train import evaluate, seed_everything, train

Log = Callable[[str], None]


@dataclass(frozen=True)
class JobReport:
    """Measurements of the dense, the one-shot pruned and the fine-tuned model, and the files."""

    before: ModelStats
    pruned: ModelStats
    after: ModelStats | None
    result: PruneResult | StructuralResult
    files: dict[str, Path] = field(default_factory=dict)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Data:
    train: DataLoader[Any]
    test: DataLoader[Any]
    example: torch.Tensor


def _data(recipe: Recipe) -> _Data:
    spec = recipe.data
    train_set = load_dataset(spec.dataset, "train", spec.root)
    test_set = load_dataset(spec.dataset, "test", spec.root)
    train_loader = make_loader(
        train_set, spec.batch_size, shuffle=True, seed=recipe.seed, limit=spec.train_limit
    )
    test_loader = make_loader(test_set, 1000, limit=spec.test_limit)
    example = test_set[0][0].unsqueeze(0)
    return _Data(train_loader, test_loader, example)


def _fit(
    model: nn.Module,
    loader: DataLoader[Any],
    spec: TrainSpec,
    progress: bool,
    distill: DistillSpec | None = None,
    teacher: nn.Module | None = None,
) -> None:
    """Train ``model`` as ``spec`` says; with ``distill``, distil from ``teacher``."""
    if spec.epochs == 0 and spec.max_steps is None:
        return
    options: dict[str, Any] = {
        "epochs": max(spec.epochs, 1),
        "max_steps": spec.max_steps,
        "lr": spec.lr,
        "optimizer": spec.optimizer,
        "weight_decay": spec.weight_decay,
        "progress": progress,
    }
    if distill is None or teacher is None:
        train(model, loader, **options)
        return
    config = DistillConfig(alpha=distill.alpha, temperature=distill.temperature)
    train_distilled(model, teacher, loader, config, **options)


def dense_model(
    recipe: Recipe, loader: DataLoader[Any], example: torch.Tensor, progress: bool, log: Log
) -> nn.Module:
    """The model to prune: loaded from ``model.checkpoint`` or trained as the recipe says."""
    spec = recipe.model
    kwargs = dict(spec.kwargs)
    kwargs.setdefault("in_channels", int(example.shape[1]))
    kwargs.setdefault("in_size", int(example.shape[-1]))
    model = build_model(spec.name, **kwargs)
    if spec.checkpoint is not None:
        log(f"loading {spec.name} from {spec.checkpoint}")
        return load(spec.checkpoint, model, rebuild_hook=rebuild_hook)
    log(f"training {spec.name} on {recipe.data.dataset} for {recipe.train.epochs} epoch(s)")
    _fit(model, loader, recipe.train, progress)
    return model


def accuracy_eval(loader: DataLoader[Any]) -> Callable[[nn.Module], Mapping[str, float]]:
    """An ``eval_fn`` giving test accuracy (%) and loss on ``loader``."""

    def eval_fn(model: nn.Module) -> Mapping[str, float]:
        result = evaluate(model, loader)
        return {"accuracy": 100.0 * result.accuracy, "loss": result.loss}

    return eval_fn


def example_inputs(model: nn.Module, fallback: torch.Tensor) -> torch.Tensor:
    """The inputs structural tracing runs on: the model's own ``example_input()`` if it has one
    (every reference model does), else one sample of the data."""
    make = getattr(model, "example_input", None)
    return make() if callable(make) else fallback


def prune_with(
    recipe: Recipe,
    model: nn.Module,
    calibration: DataLoader[Any],
    example: torch.Tensor,
    **changes: Any,
) -> PruneResult | StructuralResult:
    """Run ``prunekit.prune`` on a copy of ``model`` with the recipe's pruning settings: masks,
    or verified surgery when the recipe's ``prune.surgery`` says so (the default for channel
    granularity, always for layer granularity, which removes whole residual blocks). Surgery
    traces the model on its own ``example_input()``; the result's plan is saved with the model
    (:func:`_write`) so :func:`prunekit.io.load` rebuilds the pruned shape."""
    spec = recipe.prune
    surgery = spec.uses_surgery
    kwargs: dict[str, Any] = {
        "sparsity": spec.sparsity,
        "threshold": spec.threshold,
        "granularity": spec.granularity,
        "estimator": spec.estimator.name,
        "estimator_options": spec.estimator.options,
        "data": calibration,
        "n_batches": spec.calibration_batches,
        "scope": spec.scope,
        "include": spec.include,
        "exclude": spec.exclude,
        "overrides": spec.overrides,
        "min_keep": spec.min_keep,
        "round_to": spec.round_to,
        "normalize": spec.normalize,
        "surgery": surgery,
    }
    if surgery:
        kwargs.update(verify=spec.verify, metrics=False)
    kwargs.update(changes)
    return prune(model, example_inputs(model, example) if surgery else None, **kwargs)


def sparsity_curves(
    recipe: Recipe, model: nn.Module, data: _Data, log: Log
) -> dict[str, list[tuple[float, float]]]:
    """One-shot accuracy (no fine-tuning) against sparsity for each ``output.curve`` estimator."""
    eval_fn = accuracy_eval(data.test)
    curves: dict[str, list[tuple[float, float]]] = {}
    dense = eval_fn(model)["accuracy"]
    for name in recipe.output.curve:
        log(f"one-shot curve: {name}")
        points = [(0.0, dense)]
        for s in recipe.output.curve_sparsities:
            pruned = prune_with(
                recipe,
                model,
                data.train,
                data.example,
                sparsity=s,
                threshold=None,
                estimator=name,
                estimator_options={},
            )
            points.append((s, eval_fn(pruned.model)["accuracy"]))
        curves[name] = points
    return curves


def run_recipe(recipe: Recipe, *, progress: bool = True, log: Log = print) -> JobReport:
    """Run the whole job of ``recipe`` and write its outputs under ``recipe.output.dir``."""
    seed_everything(recipe.seed)
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    data = _data(recipe)
    model = dense_model(recipe, data.train, data.example, progress, log)
    eval_fn = accuracy_eval(data.test)
    before = measure(model, data.example, eval_fn=eval_fn)
    log(f"pruning: {recipe.prune.estimator.name} at {recipe.prune.granularity} granularity")
    result = prune_with(recipe, model, data.train, data.example)
    pruned = measure(result.model, data.example, eval_fn=eval_fn)
    after = None
    if recipe.finetune.epochs or recipe.finetune.max_steps:
        distill = recipe.finetune.distill
        kept = "" if isinstance(result, StructuralResult) else " with the masks kept"
        log(f"fine-tuning{kept}" + (", distilling from the unpruned model" if distill else ""))
        _fit(result.model, data.train, recipe.finetune, progress, distill, teacher=model)
        after = measure(result.model, data.example, eval_fn=eval_fn)
    curves = sparsity_curves(recipe, model, data, log) if recipe.output.curve else {}
    files = _write(recipe, result, curves)
    return JobReport(before, pruned, after, result, files, curves)


def _write(
    recipe: Recipe,
    result: PruneResult | StructuralResult,
    curves: Mapping[str, list[tuple[float, float]]],
) -> dict[str, Path]:
    out = Path(recipe.output.dir)
    files: dict[str, Path] = {}
    if recipe.output.save:
        arch = {"model": recipe.model.name, "kwargs": _arch_kwargs(result.model, recipe)}
        plan = result.plan.to_json() if isinstance(result, StructuralResult) else None
        files["model"] = save(
            result.model,
            out / "model",
            arch=arch,
            plan=plan,
            extra={"recipe": recipe.model_dump(mode="json")},
        )
    if recipe.output.plots:
        files["layer_sparsity"] = plot_layer_sparsity(
            layer_sparsity(result.model), out / "layer_sparsity.png"
        )
        if curves:
            files["curve"] = plot_metric_vs_sparsity(
                curves,
                out / "accuracy_vs_sparsity.png",
                metric_name="test accuracy (%)",
                title=f"{recipe.model.name} on {recipe.data.dataset}: one-shot pruning",
            )
    return files


def _arch_kwargs(model: nn.Module, recipe: Recipe) -> dict[str, Any]:
    kwargs = dict(recipe.model.kwargs)
    for key in ("in_channels", "in_size"):
        value = getattr(model, key, None)
        if isinstance(value, int):
            kwargs.setdefault(key, value)
    return kwargs
