"""Training and evaluation: a plain loop with an ``on_step`` hook for pruning schedules.

``train(model, loader, epochs=1)`` fine-tunes; ``evaluate(model, loader)`` measures loss and
accuracy; ``seed_everything(seed)`` makes runs repeatable.
"""

from prunekit.train.loop import EvalResult, LossFn, StepCallback, TrainStats, evaluate, train
from prunekit.train.optimizers import OPTIMIZERS, OptimizerFactory, make_optimizer
from prunekit.train.seed import seed_everything

__all__ = [
    "OPTIMIZERS",
    "EvalResult",
    "LossFn",
    "OptimizerFactory",
    "StepCallback",
    "TrainStats",
    "evaluate",
    "make_optimizer",
    "seed_everything",
    "train",
]
