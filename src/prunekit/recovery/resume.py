"""Training jobs that survive being killed: checkpoint every ``every`` steps, resume on rerun.

:func:`train_resumable` runs ``steps`` optimizer steps of ``model`` on ``loader`` with an
``on_step`` pruning callback (a :class:`~prunekit.schedules.Stepper`, RigL, ...). Every ``every``
steps it atomically saves the model's masks and original tensors, the optimizer state, the
callback's ``state_dict()``, the loader's shuffling generator and the global random states.
Rerunning the same call finds the checkpoint and continues from it; the final model is bitwise
the one an uninterrupted run gives (same device, same thread count).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from prunekit.core.modes import module_mode
from prunekit.errors import ConfigError
from prunekit.masks import apply_masks, masks_of, remove_masks
from prunekit.recovery.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from prunekit.recovery.originals import load_originals, original_state, original_tensor
from prunekit.train import LossFn, batches_on, device_of, train_step

CHECKPOINT_NAME = "train_state.pt"


class StatefulStep(Protocol):
    def __call__(self, step: int, model: nn.Module) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _loader_generator(loader: DataLoader[Any]) -> torch.Generator | None:
    sampler = getattr(loader, "sampler", None)
    generator = getattr(sampler, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def train_resumable(
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    steps: int,
    checkpoint_dir: str | Path,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    on_step: StatefulStep | None = None,
    every: int = 50,
    loss_fn: LossFn = F.cross_entropy,
) -> int:
    """Train for ``steps`` steps with checkpoints; return the step the run started from.

    ``make_optimizer(model)`` builds the optimizer (after the model's masks are restored, so
    it sees the same parameters in both runs).
    """
    if steps < 1 or every < 1:
        raise ConfigError("steps and every must be positive")
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    generator = _loader_generator(loader)
    step, epoch_start_state, skip = 0, None, 0
    if path.exists():
        state = load_checkpoint(path)
        optimizer = _restore(model, state, make_optimizer)
        if on_step is not None:
            on_step.load_state_dict(state["callback"])
        step, skip, epoch_start_state = state["step"], state["skip"], state["loader"]
        start_masked = list(state["start_masked"])
    else:
        start_masked = sorted(masks_of(model))
        optimizer = make_optimizer(model)
    started = step
    device = device_of(model)
    with module_mode(model, training=True):
        while step < steps:
            if generator is not None:
                if epoch_start_state is not None:
                    generator.set_state(epoch_start_state)
                epoch_start_state = generator.get_state()
            batches = islice(batches_on(loader, device), skip, None)
            position = skip
            for inputs, targets in batches:
                train_step(model, optimizer, loss_fn, inputs, targets)
                step, position = step + 1, position + 1
                if on_step is not None:
                    on_step(step, model)
                if step % every == 0 or step == steps:
                    _save(
                        path,
                        model,
                        optimizer,
                        on_step,
                        step,
                        position,
                        epoch_start_state,
                        start_masked,
                    )
                if step >= steps:
                    break
            skip, epoch_start_state = 0, None
    return started


def _save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    on_step: StatefulStep | None,
    step: int,
    position: int,
    loader_state: torch.Tensor | None,
    start_masked: list[str],
) -> None:
    save_checkpoint(
        path,
        {
            "start_masked": start_masked,
            "step": step,
            "skip": position,
            "loader": loader_state,
            "masks": masks_of(model),
            "originals": original_state(model),
            "optimizer": optimizer.state_dict(),
            "callback": on_step.state_dict() if on_step is not None else {},
            "rng": rng_state(),
        },
    )


def _restore(
    model: nn.Module,
    state: dict[str, Any],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
) -> torch.optim.Optimizer:
    """Put the checkpoint's masks, originals, optimizer and random states back.

    The optimizer is built while exactly the tensors that were masked when the first run built
    it are masked (with all-ones masks), so its parameter order, and with it the saved
    optimizer state, matches; the saved masks are then AND-ed in.
    """
    remove_masks(model)
    apply_masks(
        model,
        {name: torch.ones_like(original_tensor(model, name)) for name in state["start_masked"]},
    )
    optimizer = make_optimizer(model)
    apply_masks(model, state["masks"])
    load_originals(model, state["originals"])
    optimizer.load_state_dict(state["optimizer"])
    restore_rng(state["rng"])
    return optimizer
