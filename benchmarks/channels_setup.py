"""What every arm of benchmarks/training_channels.py shares: the arm and context records, the
data, the cached dense model, and the recovery (fine-tuning or distillation on an exact step
budget, BatchNorm recalibration)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from common import ROOT, cached_model
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit.data import load_dataset, make_loader
from prunekit.estimators import ScoringData
from prunekit.io import save
from prunekit.measure import count_macs
from prunekit.methods import bn_scale_penalty, with_penalty
from prunekit.models import build_model
from prunekit.recovery import DistillConfig, FinetuneConfig, finetune, recalibrate_batchnorm
from prunekit.train import StepCallback, evaluate, seed_everything

EVAL_BATCH = 128
"""Test-set batch size: small VGG evaluates about twice as fast per image at 128 as at 1000 on
one CPU thread (activations stay in cache); eval-mode accuracy does not depend on it."""


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


def load_context(config: Mapping[str, Any], spec: Mapping[str, Any]) -> Context:
    """Data of ``config`` and the (cached) dense model of ``spec``, in eval mode."""
    train_set = load_dataset(config["dataset"], "train")
    if config.get("train_limit"):
        train_set = TensorDataset(*(t[: config["train_limit"]] for t in train_set.tensors))
    test_loader = make_loader(
        load_dataset(config["dataset"], "test"), EVAL_BATCH, limit=config.get("test_limit")
    )
    dense = dense_model(config, spec, train_set).eval()
    example = torch.zeros(1, *train_set.tensors[0].shape[1:])
    return Context(config, train_set, test_loader, dense, example, count_macs(dense, example).total)


def dense_model(
    config: Mapping[str, Any], spec: Mapping[str, Any], train_set: TensorDataset
) -> nn.Module:
    """Train the dense model once (Adam, cosine LR), cached by its settings under ``cache_dir``.

    ``spec["slimming"]`` (a strength) trains with network slimming's L1 penalty on the
    BatchNorm scales (Liu et al. 2017). A model shipped under ``benchmarks/models/`` with the
    same key is used first (:func:`common.cached_model`): the documented runs started from it.
    """
    cache = Path(config.get("cache_dir", ROOT.parent / "runs" / "bench" / "dense"))
    kwargs = dict(spec.get("kwargs", {}))
    slimming = spec.get("slimming")
    key = (
        f"{spec['name']}{_kwargs_tag(kwargs)}-{config['dataset']}-cos-e{spec['epochs']}"
        f"-n{config.get('train_limit')}-s0" + (f"-slim{slimming:g}" if slimming else "")
    )
    seed_everything(0)  # before building: the initialisation is part of the cached model
    model = build_model(spec["name"], **kwargs)
    found = cached_model(key, cache, model)
    if found is not None:
        return found
    loader = make_loader(train_set, config["batch_size"], shuffle=True, seed=0)
    settings = FinetuneConfig(
        epochs=spec["epochs"], lr=spec.get("lr", 1e-3), keep_best=False, progress=False
    )
    penalty = with_penalty(bn_scale_penalty, model, float(slimming)) if slimming else None
    finetune(model, loader, None, settings, loss_fn=penalty)
    save(model, cache / key, arch={"model": spec["name"], "kwargs": kwargs})
    return model


def _kwargs_tag(kwargs: Mapping[str, Any]) -> str:
    """``""`` for the default model, else e.g. ``"-width32"`` (the cache key of a variant)."""
    return "".join(f"-{k}{v}" for k, v in sorted(kwargs.items()))


def accuracy(model: nn.Module, loader: DataLoader[Any]) -> float:
    return 100.0 * evaluate(model, loader).accuracy


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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


def scoring_data(ctx: Context, seed: int) -> ScoringData:
    return ScoringData.from_loader(
        train_loader(ctx, seed + 2), n_batches=ctx.config["score_batches"], progress=False
    )


def tune(
    ctx: Context,
    model: nn.Module,
    steps: int,
    arm: Arm,
    seed: int,
    on_step: StepCallback | None = None,
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
        weight_decay=ft.get("weight_decay", 0.0),
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


def recalibration_batches(ctx: Context, seed: int) -> list[Any]:
    """The ``bn_batches`` training batches every arm re-estimates BatchNorm on under ``seed``."""
    return list(itertools.islice(train_loader(ctx, seed + 1), int(ctx.config["bn_batches"])))


def recalibrate(ctx: Context, model: nn.Module, seed: int) -> None:
    recalibrate_batchnorm(model, recalibration_batches(ctx, seed), max_batches=None)
