"""How a trial's pruned model is scored: higher is better.

* ``"proxy"``: BatchNorm statistics re-estimated on the calibration batches (removing channels
  shifts every later layer's statistics), then accuracy on held-out batches; no training.
  This is AMC's proxy reward (He et al. 2018: accuracy of the pruned model without fine-tuning,
  on a held-out part of the training set).
* ``"finetune"``: the same recalibration, a short fine-tune (``steps`` optimizer steps on the
  calibration batches), then held-out accuracy: slower, closer to the accuracy after recovery.
* ``"proxy-loss"`` / ``"finetune-loss"``: the same, scored by minus the mean held-out
  cross-entropy instead of the accuracy. The loss moves with every sample's confidence, not
  only with the arg-max, so on a few hundred held-out samples it separates candidates that
  the accuracy ties (a 512-sample accuracy moves in steps of 0.2 points).
* a function ``f(model) -> float``: the user's own score of the recalibrated pruned model.

A NaN score fails the trial; the search goes on. The fine-tune runs under its own seeded random
state (dropout, the optimizer's noise), so a candidate scores the same in any process, on any
Ray worker, whatever ran there before; the caller's random state is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.norms import recalibrate_batchnorm
from prunekit.train import evaluate, train

ObjectiveFn = Callable[[nn.Module], float]
Batch = Any

OBJECTIVES = ("proxy", "finetune", "proxy-loss", "finetune-loss")
"""Named objectives; a callable is also accepted."""


@dataclass(frozen=True)
class Objective:
    """A named objective bound to its data, or a user's function (``fn``)."""

    kind: str
    calibration: Sequence[Batch]
    held_out: Sequence[Batch]
    steps: int = 20
    lr: float = 1e-3
    fn: ObjectiveFn | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fn is None and self.kind not in OBJECTIVES:
            raise ConfigError(
                f"search: objective must be one of {OBJECTIVES} or a function(model) -> float, "
                f"got {self.kind!r}"
            )
        if self.fn is None and not self.held_out:
            raise ConfigError(f"search: objective {self.kind!r} needs data (held-out batches)")
        if self.steps < 1:
            raise ConfigError(f"search: finetune steps must be >= 1, got {self.steps}")

    @property
    def trains(self) -> bool:
        """Whether the objective fine-tunes the candidate before measuring it."""
        return self.fn is None and self.kind.startswith("finetune")

    @property
    def uses_loss(self) -> bool:
        """Whether the score is minus the held-out loss (else the held-out accuracy)."""
        return self.fn is None and self.kind.endswith("-loss")

    def __call__(self, model: nn.Module) -> float:
        if self.calibration:
            recalibrate_batchnorm(model, self.calibration, max_batches=None)
        if self.fn is not None:
            return float(self.fn(model))
        if self.trains:
            batches = self.calibration or self.held_out
            epochs = -(-self.steps // len(batches))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                train(
                    model, batches, epochs=epochs, max_steps=self.steps, lr=self.lr,
                    progress=False,
                )  # fmt: skip
        measured = evaluate(model, self.held_out)
        return -float(measured.loss) if self.uses_loss else float(measured.accuracy)


def make_objective(
    objective: str | ObjectiveFn,
    calibration: Sequence[Batch],
    held_out: Sequence[Batch],
    *,
    steps: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
) -> Objective:
    """An :class:`Objective` from a name or a function; ``seed`` seeds every fine-tune."""
    if callable(objective):
        return Objective("function", calibration, held_out, steps, lr, fn=objective, seed=seed)
    return Objective(str(objective).strip().lower(), calibration, held_out, steps, lr, seed=seed)
