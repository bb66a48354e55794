"""Training jobs that survive being killed: checkpoint every ``every`` steps, resume on rerun.

:func:`train_resumable` runs ``steps`` optimizer steps of ``model`` on ``loader`` with an
``on_step`` pruning callback (a :class:`~prunekit.schedules.Stepper`, RigL, ...). Every ``every``
steps it atomically saves the model's masks and original tensors, the optimizer state, the
callback's ``state_dict()``, the random states and the loader's position. Rerunning the same
call finds the checkpoint and continues from it; the final model is bitwise the one an
uninterrupted run gives (same device, same thread count).

The loader's position is restored by replaying: at the start of every epoch the global random
states (torch, NumPy, Python, CUDA) and the loader's own generators are recorded; a resumed run
puts them back, draws the batches already trained on (so a plain ``DataLoader(shuffle=True)``,
which seeds its shuffle from the global torch generator, and random augmentations draw the same
numbers) and then restores the random states of the checkpoint itself.

The checkpoint records the settings it depends on (steps, ``every``, the model's tensors, the
optimizer and its hyperparameters, the loader's batch size, sampler and data set length, the loss
and the callback's settings, plus the caller's ``config``); a rerun with other settings is refused
with a :class:`~prunekit.errors.ConfigError` naming the changed fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence, Sized
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from prunekit.core.modes import module_mode
from prunekit.errors import ConfigError
from prunekit.io.fingerprint import Description, describe
from prunekit.masks import apply_masks, masks_of, remove_masks
from prunekit.recovery.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from prunekit.recovery.originals import load_originals, original_state, original_tensor
from prunekit.train import LossFn, batches_on, device_of, train_step

CHECKPOINT_NAME = "train_state.pt"


class StatefulStep(Protocol):
    def __call__(self, step: int, model: nn.Module) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects a loader shuffles and seeds its workers with."""
    owners = [
        loader,
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ]
    found: dict[int, torch.Generator] = {}
    for owner in owners:
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            found.setdefault(id(generator), generator)
    return list(found.values())


def epoch_state(loader: Any) -> dict[str, Any]:
    """Every random state that decides an epoch's batches: global states and loader generators."""
    return {"global": rng_state(), "generators": [g.get_state() for g in loader_generators(loader)]}


def restore_epoch_state(loader: Any, state: dict[str, Any]) -> None:
    """Put back what :func:`epoch_state` recorded."""
    generators = loader_generators(loader)
    if len(generators) != len(state["generators"]):
        raise ConfigError(
            f"the loader has {len(generators)} random generator(s), the checkpoint recorded "
            f"{len(state['generators'])}; was it built differently?"
        )
    restore_rng(state["global"])
    for generator, saved in zip(generators, state["generators"], strict=True):
        generator.set_state(saved)


def _loader_description(loader: Any) -> Description:
    dataset = getattr(loader, "dataset", None)
    sampler = getattr(loader, "sampler", None)
    info: dict[str, Any] = {
        "type": type(loader).__qualname__,
        "batch_size": getattr(loader, "batch_size", None),
        "drop_last": getattr(loader, "drop_last", None),
        "num_workers": getattr(loader, "num_workers", None),
        "sampler": None if sampler is None else type(sampler).__qualname__,
        "dataset": None if dataset is None else type(dataset).__qualname__,
        "dataset_len": _length(dataset),
        "batches": _length(loader),
    }
    if isinstance(loader, Sequence) and len(loader) > 0:
        info["first_batch"] = loader[0]  # a list of batches: their shapes stand for batch_size
    return describe(info)


def _length(value: Any) -> int | None:
    """``len(value)``, or ``None`` for what has none (a loader over an ``IterableDataset``)."""
    if not isinstance(value, Sized):
        return None
    try:
        return len(value)
    except TypeError:
        return None


def _optimizer_description(optimizer: torch.optim.Optimizer) -> Description:
    groups = [
        {**{k: v for k, v in group.items() if k != "params"}, "n_params": len(group["params"])}
        for group in optimizer.param_groups
    ]
    return describe({"type": type(optimizer).__qualname__, "groups": groups})


def job_description(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    every: int,
    loss_fn: LossFn,
    on_step: Any,
    config: Any,
) -> Description:
    """The settings a resumable training checkpoint depends on, as a flat description."""
    tensors = {n: f"{tuple(t.shape)} {t.dtype}" for n, t in original_state(model).items()}
    parts = {
        "steps": steps,
        "every": every,
        "model": {"tensors": tensors, "masked": sorted(masks_of(model))},
        "loss_fn": loss_fn,
        "on_step": on_step,
        "config": config,
    }
    description = describe(parts)
    description.update(describe({"loader": _loader_description(loader)}))
    description.update(describe({"optimizer": _optimizer_description(optimizer)}))
    return description


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
    config: Any = None,
) -> int:
    """Train for ``steps`` steps with checkpoints; return the step the run started from.

    ``make_optimizer(model)`` builds the optimizer (after the model's masks are restored, so
    it sees the same parameters in both runs). ``config`` is any further setting the job
    depends on (a dataclass, pydantic model or mapping: learning-rate schedule, data set name,
    seed); it is recorded and compared like the automatic ones.

    Raises:
        ConfigError: the checkpoint was written with other settings (the message names them).
        SaveFileError: the checkpoint is corrupt (its checksum does not match).
    """
    if steps < 1 or every < 1:
        raise ConfigError(f"steps and every must be positive, got steps={steps}, every={every}")
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    optimizer = make_optimizer(model)
    settings = job_description(
        model, loader, optimizer, steps=steps, every=every, loss_fn=loss_fn, on_step=on_step,
        config=config,
    )  # fmt: skip
    resume: dict[str, Any] | None = None
    if path.exists():
        resume = load_checkpoint(path, config=settings)
        optimizer = _restore(model, resume, make_optimizer)
        if on_step is not None:
            on_step.load_state_dict(resume["callback"])
        step, start_masked = int(resume["step"]), list(resume["start_masked"])
    else:
        step, start_masked = 0, sorted(masks_of(model))
    started = step
    device = device_of(model)
    with module_mode(model, training=True):
        while step < steps:
            if resume is not None:
                restore_epoch_state(loader, resume["epoch"])
            epoch = epoch_state(loader)
            batches = batches_on(loader, device)
            position = 0
            if resume is not None:
                position = _replay(batches, int(resume["skip"]), path)
                restore_rng(resume["rng"])
                resume = None
            for inputs, targets in batches:
                train_step(model, optimizer, loss_fn, inputs, targets)
                step, position = step + 1, position + 1
                if on_step is not None:
                    on_step(step, model)
                if step % every == 0 or step == steps:
                    state = _state(model, optimizer, on_step, step, position, epoch, start_masked)
                    save_checkpoint(path, state, config=settings)
                if step >= steps:
                    break
    return started


def _replay(batches: Iterator[Any], skip: int, path: Path) -> int:
    """Draw the ``skip`` batches the checkpointed run had already trained on this epoch."""
    drawn = sum(1 for _ in islice(batches, skip))
    if drawn != skip:
        raise ConfigError(
            f"{path}: the checkpoint was taken after batch {skip} of an epoch, but the loader "
            f"gives only {drawn}"
        )
    return drawn


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    on_step: StatefulStep | None,
    step: int,
    position: int,
    epoch: dict[str, Any],
    start_masked: list[str],
) -> dict[str, Any]:
    return {
        "start_masked": start_masked,
        "step": step,
        "skip": position,
        "epoch": epoch,
        "masks": masks_of(model),
        "originals": original_state(model),
        "optimizer": optimizer.state_dict(),
        "callback": on_step.state_dict() if on_step is not None else {},
        "rng": rng_state(),
    }


def _restore(
    model: nn.Module,
    state: dict[str, Any],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
) -> torch.optim.Optimizer:
    """Put the checkpoint's masks, originals and optimizer back (random states come later).

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
    return optimizer
