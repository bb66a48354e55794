"""A plain supervised training loop and an evaluation pass, for fine-tuning and measuring.

Batches are ``(inputs, targets)`` pairs and are moved to the device of the model's parameters,
so the same call runs on CPU or GPU. Progress bars (tqdm) switch themselves off when the output
is not a terminal. Pruning schedules hook in through ``on_step(step, model)``, called after
every optimizer step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from prunekit.core.modes import module_mode
from prunekit.core.outputs import cross_entropy, logits_of
from prunekit.errors import ConfigError, DataError
from prunekit.train.optimizers import make_optimizer

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, nn.Module], None]


@dataclass(frozen=True)
class TrainStats:
    """What a call to :func:`train` did.

    Attributes:
        steps: optimizer steps taken.
        epochs: passes over the loader begun (the last may be cut short by ``max_steps``).
        samples: training samples seen.
        loss: mean per-sample loss over the last (possibly partial) epoch.
        accuracy: fraction of the last epoch's samples classified correctly while training
            (NaN when outputs are not class logits).
        seconds: wall-clock time.
        losses: the loss of every step, in order.
    """

    steps: int
    epochs: int
    samples: int
    loss: float
    accuracy: float
    seconds: float
    losses: tuple[float, ...]


@dataclass(frozen=True)
class EvalResult:
    """Mean per-sample ``loss``, ``accuracy`` (NaN for non-classification outputs) over ``n``
    samples."""

    loss: float
    accuracy: float
    n: int


class _Meter:
    """Running per-sample sums of loss and correct predictions."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.correct = 0
        self.n = 0
        self.classifying = True

    def add(self, loss: float, outputs: Any, targets: torch.Tensor) -> None:
        outputs = logits_of(outputs)
        batch = len(targets)
        self.loss_sum += loss * batch
        self.n += batch
        self.classifying &= _is_classification(outputs, targets)
        if self.classifying:
            self.correct += int((outputs.argmax(dim=1) == targets).sum())

    @property
    def loss(self) -> float:
        return self.loss_sum / self.n if self.n else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n and self.classifying else math.nan


def train(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    epochs: int = 1,
    max_steps: int | None = None,
    lr: float = 1e-3,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    loss_fn: LossFn = cross_entropy,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> TrainStats:
    """Train ``model`` on ``loader`` for ``epochs`` passes or ``max_steps`` steps, whichever
    comes first.

    ``optimizer`` is a name from :data:`~prunekit.train.optimizers.OPTIMIZERS` (built here from
    ``lr``, ``weight_decay`` and ``momentum``) or a ready optimizer, whose own settings are then
    used. ``on_step(step, model)`` runs after each optimizer step (``step`` counts from 1), e.g.
    to update pruning masks on a schedule. The model trains in train mode; each submodule's
    train/eval mode is restored on return. An empty loader raises :class:`DataError`.
    """
    _check_count("epochs", epochs)
    if max_steps is not None:
        _check_count("max_steps", max_steps)
    if isinstance(optimizer, str):
        optimizer = make_optimizer(
            optimizer, model, lr=lr, weight_decay=weight_decay, momentum=momentum
        )
    device = device_of(model)
    total = _total_steps(loader, epochs, max_steps)
    losses: list[float] = []
    samples, epoch = 0, 0
    meter = _Meter()
    start = time.perf_counter()
    with module_mode(model, training=True), _bar(total, "train", progress) as bar:
        while epoch < epochs and (max_steps is None or len(losses) < max_steps):
            epoch, meter = epoch + 1, _Meter()
            for inputs, targets in batches_on(loader, device):
                outputs, loss = train_step(model, optimizer, loss_fn, inputs, targets)
                losses.append(loss)
                meter.add(loss, outputs, targets)
                if on_step is not None:
                    on_step(len(losses), model)
                bar.update(1)
                if len(losses) % 10 == 0:
                    bar.set_postfix(loss=f"{meter.loss:.4f}", refresh=False)
                if max_steps is not None and len(losses) >= max_steps:
                    break
            if meter.n == 0:
                raise DataError(_empty_message(loader, f"train (epoch {epoch})"))
            samples += meter.n
    seconds = time.perf_counter() - start
    return TrainStats(
        len(losses), epoch, samples, meter.loss, meter.accuracy, seconds, tuple(losses)
    )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    inputs: Any,
    targets: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """One optimizer step on one batch: zero the gradients, forward, ``loss_fn``, backward, step.

    Returns the detached outputs and the loss as a float. This is the step :func:`train` takes;
    loops of their own (resumable training, dynamic sparse training) call it so every loop in
    prunekit computes the same update.
    """
    optimizer.zero_grad(set_to_none=True)
    outputs = model(inputs)
    loss = loss_fn(outputs, targets)
    loss.backward()
    optimizer.step()
    return outputs.detach(), loss.item()


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss_fn: LossFn = cross_entropy,
    max_batches: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Mean loss and accuracy of ``model`` over ``loader`` (its first ``max_batches`` batches).

    Runs in eval mode under ``torch.no_grad``; each submodule's train/eval mode is restored on
    return, even after an error. ``loss_fn`` must return the batch mean (the default does); the
    result weights batches by their size. An empty loader raises :class:`DataError`.
    """
    if max_batches is not None:
        _check_count("max_batches", max_batches)
    device = device_of(model)
    total = _total_steps(loader, 1, max_batches)
    meter = _Meter()
    with module_mode(model, training=False), torch.no_grad(), _bar(total, "eval", progress) as bar:
        for inputs, targets in islice(batches_on(loader, device), max_batches):
            outputs = model(inputs)
            meter.add(loss_fn(outputs, targets).item(), outputs, targets)
            bar.update(1)
    if meter.n == 0:
        raise DataError(_empty_message(loader, "evaluate"))
    return EvalResult(meter.loss, meter.accuracy, meter.n)


@contextmanager
def _bar(total: int | None, desc: str, progress: bool) -> Iterator[Any]:
    """A tqdm bar that hides itself when ``progress`` is false or stderr is not a terminal."""
    bar = tqdm(total=total, desc=desc, unit="step", disable=None if progress else True)
    try:
        yield bar
    finally:
        bar.close()


def batches_on(
    loader: Iterable[Any], device: torch.device | None
) -> Iterator[tuple[Any, torch.Tensor]]:
    """``(inputs, targets)`` of each batch of ``loader``, moved to ``device`` (left where they
    are if ``None``).

    Every batch must be an ``(inputs, targets)`` pair; anything else raises :class:`DataError`
    naming what was found, so a loader of dicts fails at its first batch with a clear message.
    """
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError(
                f"expected batches of (inputs, targets), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        inputs, targets = batch
        if device is not None:
            inputs, targets = inputs.to(device), targets.to(device)
        yield inputs, targets


def _is_classification(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """True for logits ``[N, C]`` with integer class labels ``[N]``."""
    return (
        outputs.dim() == 2
        and targets.dim() == 1
        and not targets.is_floating_point()
        and not targets.is_complex()
    )


def device_of(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter, or ``None`` for a model without any.

    Batches are moved there (:func:`batches_on`), so the same call trains on CPU or GPU.
    """
    return next((p.device for p in model.parameters()), None)


def _total_steps(loader: Iterable[Any], epochs: int, limit: int | None) -> int | None:
    """Number of steps the bar should expect, or ``None`` if the loader has no length."""
    try:
        total = len(loader) * epochs  # type: ignore[arg-type]
    except TypeError:
        return limit
    return total if limit is None else min(total, limit)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _empty_message(loader: Iterable[Any], what: str) -> str:
    return (
        f"cannot {what}: the loader ({type(loader).__name__}) yielded no batches; check that "
        "the data set is not empty, that drop_last does not drop its only batch, and that the "
        "loader is not a one-shot iterator already used up"
    )
