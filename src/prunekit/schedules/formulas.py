"""Schedules: sparsity as a pure function of the training step.

A schedule is a frozen dataclass with ``__call__(step) -> sparsity``; it holds no state and reads
nothing but its fields, so the same step always gives the same sparsity (which makes resuming a
job trivial). Every schedule is monotone non-decreasing in the step and reaches its final sparsity
exactly at (and after) its last pruning step.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from prunekit.errors import ConfigError, check_sparsity

Spacing = Literal["geometric", "linear"]


def _check_step(name: str, value: int, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


class Schedule(ABC):
    """Sparsity as a function of the optimizer step (steps count from 0 or 1, as the caller
    likes: the schedule only compares them with its own fields)."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    final_sparsity: float

    @abstractmethod
    def __call__(self, step: int) -> float:
        """The target sparsity at ``step``."""

    @property
    @abstractmethod
    def end_step(self) -> int:
        """The first step at which the final sparsity is reached."""


@dataclass(frozen=True)
class OneShot(Schedule):
    """All at once: 0 before ``step``, ``final_sparsity`` from ``step`` on."""

    name: ClassVar[str] = "one-shot"
    summary: ClassVar[str] = "all at once at one step"
    final_sparsity: float
    step: int = 0

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "final_sparsity")
        _check_step("step", self.step)

    def __call__(self, step: int) -> float:
        return self.final_sparsity if step >= self.step else 0.0

    @property
    def end_step(self) -> int:
        return self.step


@dataclass(frozen=True)
class Iterative(Schedule):
    """``rounds`` pruning rounds, one every ``steps_per_round`` steps from ``begin_step``
    (prune, fine-tune, repeat; Han et al. 2015).

    ``spacing="geometric"`` removes the same fraction of the *remaining* units each round, so the
    kept fraction after round ``k`` is ``(1 - s)^(k / rounds)`` (the ``p%`` per round of iterative
    magnitude pruning, Frankle & Carbin 2019); ``"linear"`` adds ``s / rounds`` each round.
    """

    name: ClassVar[str] = "iterative"
    summary: ClassVar[str] = "prune, fine-tune, repeat, in rounds (Han et al. 2015)"
    final_sparsity: float
    rounds: int
    steps_per_round: int = 1
    begin_step: int = 0
    spacing: Spacing = "geometric"

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "final_sparsity")
        _check_step("rounds", self.rounds, 1)
        _check_step("steps_per_round", self.steps_per_round, 1)
        _check_step("begin_step", self.begin_step)
        if self.spacing not in ("geometric", "linear"):
            raise ConfigError(f"spacing must be 'geometric' or 'linear', got {self.spacing!r}")

    def level(self, k: int) -> float:
        """Sparsity after round ``k`` (0 = dense, ``rounds`` = final)."""
        k = max(0, min(k, self.rounds))
        if k == self.rounds:
            return self.final_sparsity
        if self.spacing == "linear":
            return self.final_sparsity * k / self.rounds
        return 1.0 - (1.0 - self.final_sparsity) ** (k / self.rounds)

    def levels(self) -> list[float]:
        """The sparsity after each round, in order."""
        return [self.level(k) for k in range(1, self.rounds + 1)]

    def __call__(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        return self.level((step - self.begin_step) // self.steps_per_round + 1)

    @property
    def end_step(self) -> int:
        return self.begin_step + (self.rounds - 1) * self.steps_per_round


@dataclass(frozen=True)
class Polynomial(Schedule):
    """Gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune"):
    ``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_end - t_0)) ** power`` for
    ``t_0 <= t <= t_end``, updated every ``frequency`` steps (the sparsity holds between updates),
    ``s_i`` before ``t_0`` and ``s_f`` from ``t_end`` on. ``power=3`` (cubic) prunes fast while
    the network is redundant and slowly near the end.
    """

    name: ClassVar[str] = "polynomial"
    summary: ClassVar[str] = "gradual cubic ramp during training (Zhu & Gupta 2017)"
    final_sparsity: float
    begin_step: int = 0
    end: int = 1000
    frequency: int = 100
    initial_sparsity: float = 0.0
    power: float = 3.0

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "final_sparsity")
        check_sparsity(self.initial_sparsity, "initial_sparsity")
        _check_step("begin_step", self.begin_step)
        _check_step("frequency", self.frequency, 1)
        if not (isinstance(self.end, int) and self.end > self.begin_step):
            raise ConfigError(f"end ({self.end!r}) must be an integer > begin_step")
        if self.initial_sparsity > self.final_sparsity:
            raise ConfigError("initial_sparsity must not exceed final_sparsity")
        if not (math.isfinite(self.power) and self.power > 0):
            raise ConfigError(f"power must be positive, got {self.power!r}")

    def __call__(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        if step >= self.end:
            return self.final_sparsity
        updated = self.begin_step + (step - self.begin_step) // self.frequency * self.frequency
        progress = (updated - self.begin_step) / (self.end - self.begin_step)
        span = self.initial_sparsity - self.final_sparsity
        return self.final_sparsity + span * (1.0 - progress) ** self.power

    @property
    def end_step(self) -> int:
        return self.end


@dataclass(frozen=True)
class Constant(Schedule):
    """The same sparsity at every step (dynamic sparse training keeps it constant)."""

    name: ClassVar[str] = "constant"
    summary: ClassVar[str] = "the same sparsity at every step (dynamic sparse training)"
    final_sparsity: float

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "final_sparsity")

    def __call__(self, step: int) -> float:
        return self.final_sparsity

    @property
    def end_step(self) -> int:
        return 0
