"""Lottery tickets by iterative magnitude pruning with rewinding.

Frankle & Carbin 2019 ("The Lottery Ticket Hypothesis"): train, prune the smallest-magnitude
weights, reset the survivors to their initial values, repeat. Frankle et al. 2020 ("Linear Mode
Connectivity and the Lottery Ticket Hypothesis") rewind to the weights of an early iteration
``k`` instead of to initialisation, which makes tickets appear in deeper nets. The control
re-initialises the survivors at random (same masks, fresh weights): a ticket is a ticket only if
it beats that control.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.config import PruneConfig
from prunekit.errors import ConfigError, check_sparsity
from prunekit.io.fingerprint import Description, describe
from prunekit.masks import clone_model, masks_of, remove_masks
from prunekit.recovery.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from prunekit.recovery.originals import load_originals, original_state
from prunekit.schedules import Iterative, prune_further, schedule_config
from prunekit.train import StepCallback

TrainRound = Callable[[nn.Module, int, StepCallback | None], None]
"""``train_round(model, round, on_step)`` trains ``model`` once (round 0 is the dense run) and
calls ``on_step(step, model)`` after every optimizer step. Seed the round's data order from
``round`` so that a resumed job sees the same batches."""

MetricFn = Callable[[nn.Module], float]


@dataclass(frozen=True)
class TicketConfig:
    """IMP settings.

    Attributes:
        final_sparsity: fraction of weights removed after the last round.
        rounds: pruning rounds; each removes the same fraction of the remaining weights.
        rewind_step: 0 rewinds to initialisation; ``k`` to the weights after ``k`` optimizer
            steps of the dense run (late rewinding).
        reinit: the random-reinitialisation control (fresh weights drawn with ``reinit_seed``).
        prune: how weights are grouped, scored and selected: a
            :class:`~prunekit.config.PruneConfig` or a mapping of its options without a
            sparsity (the rounds set it; see :func:`prunekit.schedules.schedule_config`).
            Default: global magnitude pruning of single weights.
    """

    final_sparsity: float = 0.9
    rounds: int = 5
    rewind_step: int = 0
    reinit: bool = False
    reinit_seed: int = 1234
    prune: PruneConfig | Mapping[str, Any] = field(default_factory=schedule_config)

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "final_sparsity")
        if self.rounds < 1 or self.rewind_step < 0:
            raise ConfigError("rounds must be >= 1 and rewind_step >= 0")
        object.__setattr__(self, "prune", schedule_config(self.prune, where="TicketConfig.prune"))


@dataclass(frozen=True)
class TicketRound:
    round: int
    sparsity: float
    weights_left: float
    metric: float


@dataclass
class TicketResult:
    model: nn.Module
    rounds: list[TicketRound]
    rewind_state: dict[str, Tensor]


def random_state(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """Fresh initial weights for ``model``'s architecture (each module's ``reset_parameters``)."""
    fresh = clone_model(model)
    remove_masks(fresh)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return original_state(fresh, buffers=False)


def _weights_left(model: nn.Module) -> float:
    masks = masks_of(model)
    total = sum(m.numel() for m in masks.values())
    return float(sum(m.sum() for m in masks.values()) / total) if total else 1.0


def find_ticket(
    model: nn.Module,
    train_round: TrainRound,
    config: TicketConfig | None = None,
    *,
    metric: MetricFn | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TicketResult:
    """Run IMP on ``model`` in place: dense training, then ``rounds`` x (prune -> rewind ->
    retrain). ``metric(model)`` (e.g. test accuracy) is recorded after every training run.

    With ``checkpoint_dir`` every finished round is saved atomically; calling again with the
    same arguments resumes after the last finished round. The checkpoint records ``config`` and
    the model's tensors: calling again with another config (or model) raises a
    :class:`ConfigError` naming the changed fields rather than continuing, or returning, a
    ticket found with other settings.
    """
    config = config or TicketConfig()
    schedule = Iterative(config.final_sparsity, config.rounds)
    ckpt = Path(checkpoint_dir) / "imp.pt" if checkpoint_dir is not None else None
    rounds: list[TicketRound] = []
    rewind: dict[str, Tensor] = original_state(model) if config.rewind_step == 0 else {}
    start = 0
    settings = _settings(model, config)
    if ckpt is not None and ckpt.exists():
        start, rewind, rounds = _resume(model, ckpt, settings)

    def capture(step: int, m: nn.Module) -> None:
        if step == config.rewind_step:
            rewind.update(original_state(m))

    for k in range(start, config.rounds + 1):
        if k > 0:
            level = schedule.level(k)
            prune_further(model, level, config.prune, where="find_ticket()")
            if config.reinit:
                load_originals(model, random_state(model, config.reinit_seed + k))
            else:
                load_originals(model, rewind)
        train_round(model, k, capture if k == 0 and config.rewind_step > 0 else None)
        if not rewind:
            raise ConfigError(f"rewind_step {config.rewind_step} was never reached in round 0")
        value = metric(model) if metric is not None else float("nan")
        sparsity = schedule.level(k) if k else 0.0
        rounds.append(TicketRound(k, sparsity, _weights_left(model), value))
        if ckpt is not None:
            _save(model, ckpt, k + 1, rewind, rounds, settings)
    return TicketResult(model, rounds, rewind)


def _settings(model: nn.Module, config: TicketConfig) -> Description:
    """What a ticket checkpoint depends on: the IMP settings and the model's tensors."""
    tensors = {n: f"{tuple(t.shape)} {t.dtype}" for n, t in original_state(model).items()}
    return describe({"config": config, "model": tensors})


def _save(
    model: nn.Module,
    path: Path,
    next_round: int,
    rewind: dict[str, Tensor],
    rounds: list[Any],
    settings: Description,
) -> None:
    save_checkpoint(
        path,
        {
            "next_round": next_round,
            "masks": masks_of(model),
            "originals": original_state(model),
            "rewind": rewind,
            "rounds": [[r.round, r.sparsity, r.weights_left, r.metric] for r in rounds],
            "rng": rng_state(),
        },
        config=settings,
    )


def _resume(
    model: nn.Module, path: Path, settings: Description
) -> tuple[int, dict[str, Tensor], list[TicketRound]]:
    from prunekit.masks import apply_masks

    state = load_checkpoint(path, config=settings)
    remove_masks(model)
    apply_masks(model, state["masks"])
    load_originals(model, state["originals"])
    restore_rng(state["rng"])
    rounds = [TicketRound(int(a), float(b), float(c), float(d)) for a, b, c, d in state["rounds"]]
    return int(state["next_round"]), dict(state["rewind"]), rounds
