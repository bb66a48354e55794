"""Run a recipe end to end: data, dense model, measure, prune, fine-tune, measure, save, plot.

This is what ``prunekit prune RECIPE`` and ``prunekit demo`` run. Every stage is a call into the
public API; the job only wires them and reports.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunekit.api import prune
from prunekit.data import load_dataset, make_loader
from prunekit.export.recipe_section import run_export_section
from prunekit.measure import ModelStats, compare, layer_sparsity, measure
from prunekit.measure.latency import measure_latency
from prunekit.models import build_model
from prunekit.persist import load
from prunekit.recipe import DistillSpec, Recipe, TrainSpec
from prunekit.recovery import DistillConfig, train_distilled
from prunekit.report.html import layer_sparsity_plot, write_html_report
from prunekit.report.latency import runtime_latencies
from prunekit.report.plots import plot_layer_sparsity, plot_metric_vs_sparsity
from prunekit.report.run import (
    RunReport,
    RuntimeLatency,
    Verification,
    collect_versions,
    layer_rows_from_selection,
)
from prunekit.result import PruneResult
from prunekit.sources import ModelSource, example_from_shape, load_data, load_model
from prunekit.train import evaluate, seed_everything, train

Log = Callable[[str], None]


@dataclass(frozen=True)
class JobReport:
    """Measurements of the dense, the one-shot pruned and the fine-tuned model, and the files."""

    before: ModelStats
    pruned: ModelStats
    after: ModelStats | None
    result: PruneResult
    files: dict[str, Path] = field(default_factory=dict)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Data:
    train: DataLoader[Any]
    test: DataLoader[Any]
    example: Any
    num_classes: int | None = None


def recipe_data(recipe: Recipe, source: ModelSource | None = None) -> _Data:
    spec = recipe.data
    if ":" in spec.dataset:  # a data spec: imagefolder:DIR, npz:FILE, text:FILE
        loaded = load_data(
            spec.dataset, model=source, batch_size=spec.batch_size, limit=spec.train_limit,
            seed=recipe.seed,
        )  # fmt: skip
        return _Data(loaded.train, loaded.test, loaded.example_inputs, loaded.num_classes)
    train_set = load_dataset(spec.dataset, "train", spec.root)
    test_set = load_dataset(spec.dataset, "test", spec.root)
    train_loader = make_loader(
        train_set, spec.batch_size, shuffle=True, seed=recipe.seed, limit=spec.train_limit
    )
    test_loader = make_loader(test_set, 1000, limit=spec.test_limit)
    example = test_set[0][0].unsqueeze(0)
    return _Data(train_loader, test_loader, example)


def model_source(recipe: Recipe) -> ModelSource | None:
    """The user's model named by a model spec (``torchvision:resnet18``, ...); for a reference
    model on a data spec (``imagefolder:DIR``), the reference model as built by default, whose
    input shape the data is read to; else ``None`` (:func:`dense_model` builds the reference
    model for the built-in data)."""
    spec = recipe.model
    if spec.is_source:
        return load_model(spec.name, weights=spec.weights, kwargs=spec.kwargs)
    if ":" in recipe.data.dataset:
        return load_model(spec.name, kwargs=spec.kwargs)
    return None


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
    recipe: Recipe,
    loader: DataLoader[Any],
    example: torch.Tensor,
    progress: bool,
    log: Log,
    source: ModelSource | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """The model to prune: the user's model (``source``, trained only when the recipe's
    ``train.epochs`` asks for it explicitly), or a reference model loaded from
    ``model.checkpoint`` or trained as the recipe says (with ``num_classes`` outputs when the
    data says how many classes it has)."""
    spec = recipe.model
    if source is not None and source.family != "prunekit":
        model = source.model
        if spec.checkpoint is not None:
            log(f"loading {spec.name} from {spec.checkpoint}")
            return load(spec.checkpoint, model)
        if "epochs" in recipe.train.model_fields_set and recipe.train.epochs > 0:
            log(f"training {spec.name} on {recipe.data.dataset} for {recipe.train.epochs} epoch(s)")
            _fit(model, loader, recipe.train, progress)
        return model
    kwargs = dict(spec.kwargs)
    kwargs.setdefault("in_channels", int(example.shape[1]))
    kwargs.setdefault("in_size", int(example.shape[-1]))
    if num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    model = build_model(spec.name, **kwargs)
    if spec.checkpoint is not None:
        log(f"loading {spec.name} from {spec.checkpoint}")
        return load(spec.checkpoint, model)
    log(f"training {spec.name} on {recipe.data.dataset} for {recipe.train.epochs} epoch(s)")
    _fit(model, loader, recipe.train, progress)
    return model


def accuracy_eval(loader: DataLoader[Any]) -> Callable[[nn.Module], Mapping[str, float]]:
    """An ``eval_fn`` giving test accuracy (%) and loss on ``loader``."""

    def eval_fn(model: nn.Module) -> Mapping[str, float]:
        result = evaluate(model, loader)
        return {"accuracy": 100.0 * result.accuracy, "loss": result.loss}

    return eval_fn


def example_inputs(model: nn.Module, fallback: Any) -> Any:
    """The inputs structural tracing runs on: the model's own ``example_input()`` if it has one
    (every reference model does), else one sample of the data."""
    make = getattr(model, "example_input", None)
    return make() if callable(make) else fallback


def prune_with(
    recipe: Recipe,
    model: nn.Module,
    calibration: DataLoader[Any],
    example: Any,
    progress: bool = False,
    **changes: Any,
) -> PruneResult:
    """Run ``prunekit.prune`` on a copy of ``model`` with the recipe's ``prune:`` config (and
    ``changes`` to it). Example inputs are always passed, so structural granularities prune by
    verified surgery (unless the config says ``surgery: false``); the result's plan is saved
    with the model (:func:`_write`) so :func:`prunekit.load` rebuilds the pruned shape."""
    # the job measures the models itself, with the task metric
    config = recipe.prune.replace(**changes, metrics=False)
    return prune(
        model, example_inputs(model, example), config=config, data=calibration, progress=progress
    )


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


def batched(example: Any, batch: int) -> Any:
    """``example`` (batch 1) repeated to ``batch`` rows: a tensor, or each tensor of a tuple or
    dict of them."""
    if batch == 1:
        return example
    if isinstance(example, torch.Tensor):
        return example.expand(batch, *example.shape[1:]).contiguous()
    if isinstance(example, tuple):
        return tuple(batched(x, batch) for x in example)
    if isinstance(example, dict):
        return {k: batched(v, batch) for k, v in example.items()}
    return example


def compare_latency(
    dense: nn.Module, pruned: nn.Module, inputs: Any, rounds: int = 5, threads: int = 1
) -> tuple[float, float]:
    """Median forward time (ms) of both models on ``threads`` CPU threads, measured in
    alternating rounds so that a change in machine load hits both alike. One thread by
    default: a thread pool on a shared machine waits for descheduled threads and turns
    milliseconds into scheduler slices."""
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    for _ in range(rounds):
        for name, model in (("dense", dense), ("pruned", pruned)):
            latency = measure_latency(model, inputs, warmup=2, repeats=5, threads=threads)
            times[name].append(latency.median_ms)
    return statistics.median(times["dense"]), statistics.median(times["pruned"])


def run_recipe(
    recipe: Recipe, *, progress: bool = True, log: Log = print, command: str = ""
) -> JobReport:
    """Run the whole job of ``recipe`` and write its outputs under ``recipe.output.dir``."""
    seed_everything(recipe.seed)
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    source = model_source(recipe)
    data = recipe_data(recipe, source)
    if recipe.example_shape is not None:  # tracing and measuring inputs given as a shape
        data = dataclasses.replace(data, example=example_from_shape(recipe.example_shape))
    model = dense_model(recipe, data.train, data.example, progress, log, source, data.num_classes)
    eval_fn = accuracy_eval(data.test)
    before = measure(model, data.example, eval_fn=eval_fn, latency=False)
    log(f"pruning: {recipe.prune.estimator} at {recipe.prune.granularity} granularity")
    result = prune_with(recipe, model, data.train, data.example, progress)
    pruned = measure(result.model, data.example, eval_fn=eval_fn, latency=False)
    after = None
    if recipe.finetune.epochs or recipe.finetune.max_steps:
        distill = recipe.finetune.distill
        kept = "" if result.structural else " with the masks kept"
        log(f"fine-tuning{kept}" + (", distilling from the unpruned model" if distill else ""))
        _fit(result.model, data.train, recipe.finetune, progress, distill, teacher=model)
        after = measure(result.model, data.example, eval_fn=eval_fn, latency=False)
    if recipe.output.latency:
        log(
            f"timing dense and pruned models (batch {recipe.output.latency_batch}, one thread, "
            "interleaved)"
        )
        dense_ms, pruned_ms = compare_latency(
            model, result.model, batched(data.example, recipe.output.latency_batch)
        )
        before = dataclasses.replace(before, latency_ms=dense_ms)
        if after is None:
            pruned = dataclasses.replace(pruned, latency_ms=pruned_ms)
        else:
            after = dataclasses.replace(after, latency_ms=pruned_ms)
    latencies: tuple[RuntimeLatency, ...] = ()
    if recipe.output.latency_runtimes:
        log(f"timing dense and pruned models in {', '.join(recipe.output.latency_runtimes)}")
        latencies = runtime_latencies(
            model,
            result.model,
            data.example,
            recipe.output.latency_runtimes,
            batch=recipe.output.latency_batch,
        )
    curves = sparsity_curves(recipe, model, data, log) if recipe.output.curve else {}
    files = _write(recipe, result, curves)
    if recipe.export is not None:
        log(f"exporting to {recipe.export.format}")
        exported = run_export_section(
            result, recipe.export, recipe.output.dir, example_inputs=data.example
        )
        log(exported.line())
        files["export"] = exported.export.path
    if recipe.output.report:
        files["report"] = write_html_report(
            Path(recipe.output.dir) / "report.html",
            run_report(recipe, result, before, after or pruned, command, latencies),
        )
    return JobReport(before, pruned, after, result, files, curves)


def run_report(
    recipe: Recipe,
    result: PruneResult,
    before: ModelStats,
    after: ModelStats,
    command: str,
    latencies: tuple[RuntimeLatency, ...] = (),
) -> RunReport:
    """The HTML report's content: before / after rows, units kept per layer, verification."""
    rows = layer_rows_from_selection(result.selection, quantity="units")
    if result.verification is not None:
        verification = Verification.from_report(result.verification)
    elif result.structural:
        verification = Verification.skipped("verification was turned off")
    else:
        verification = Verification.skipped("masks: the model computes the masked function")
    return RunReport(
        title=f"prunekit: {recipe.model.name} on {recipe.data.dataset}, "
        f"{recipe.prune.granularity} pruning by {recipe.prune.estimator}",
        command=command or "prunekit prune",
        versions=collect_versions(),
        metrics=tuple(compare(before, after)),
        layers=tuple(rows),
        verification=verification,
        warnings=tuple(result.notes),
        plots=(layer_sparsity_plot(rows),) if rows else (),
        latencies=latencies,
    )


def _write(
    recipe: Recipe,
    result: PruneResult,
    curves: Mapping[str, list[tuple[float, float]]],
) -> dict[str, Path]:
    out = Path(recipe.output.dir)
    files: dict[str, Path] = {}
    if recipe.output.save:
        arch = {"model": recipe.model.name, "kwargs": arch_kwargs(result.model, recipe)}
        extra = {"recipe": recipe.model_dump(mode="json")}
        files["model"] = result.save(out / "model", arch=arch, extra=extra)
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


def arch_kwargs(model: nn.Module, recipe: Recipe) -> dict[str, Any]:
    kwargs = dict(recipe.model.kwargs)
    for key in ("in_channels", "in_size", "num_classes"):
        value = getattr(model, key, None)
        if isinstance(value, int):
            kwargs.setdefault(key, value)
    return kwargs
