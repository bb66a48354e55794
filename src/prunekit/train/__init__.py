"""Training and evaluation: a plain loop with an ``on_step`` hook for pruning schedules.

``train(model, loader, epochs=1)`` fine-tunes; ``evaluate(model, loader)`` measures loss and
accuracy; ``seed_everything(seed)`` makes runs repeatable. Loops of their own (resumable
training, BatchNorm recalibration) build on the same pieces: ``batches_on`` (batches moved to a
device), ``device_of`` (a model's device) and ``train_step`` (one optimizer step).
"""

from prunekit.train.loop import (
    EvalResult,
    LossFn,
    StepCallback,
    TrainStats,
    batches_on,
    device_of,
    evaluate,
    train,
    train_step,
)
from prunekit.train.optimizers import OPTIMIZERS, OptimizerFactory, make_optimizer
from prunekit.train.seed import seed_everything

__all__ = [
    "OPTIMIZERS",
    "EvalResult",
    "LossFn",
    "OptimizerFactory",
    "StepCallback",
    "TrainStats",
    "batches_on",
    "device_of",
    "evaluate",
    "make_optimizer",
    "seed_everything",
    "train",
    "train_step",
]
