"""Fine-tuning after pruning, optionally distilling from the unpruned model.

:func:`finetune` runs :func:`prunekit.train.train` one epoch at a time with a per-step learning
rate schedule, evaluates after each epoch, and keeps the best epoch's weights. With a
``teacher`` the loss is :func:`~prunekit.recovery.distill.distillation_loss` on the teacher's
logits for the same batch, plus (optionally) feature matching between named modules of the
student and the teacher through 1x1 adapters where a pruned student is narrower (FitNets).
:func:`train_distilled` is ``train`` with the distillation loss, for loops that need ``train``'s
exact step and epoch semantics (the recipe pipeline).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.core.outputs import logits_of
from prunekit.errors import ConfigError
from prunekit.masks import clone_model, masks_of
from prunekit.recovery.distill import DistillConfig, distillation_loss, feature_loss
from prunekit.train import LossFn, StepCallback, TrainStats, evaluate, make_optimizer, train


@dataclass(frozen=True)
class FinetuneConfig:
    """Optimizer, learning-rate schedule (``cosine`` decays to 0 over all steps) and length."""

    epochs: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    max_steps_per_epoch: int | None = None
    keep_best: bool = True
    progress: bool = True


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    eval_loss: float
    eval_accuracy: float


@dataclass
class FinetuneResult:
    model: nn.Module
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def best_accuracy(self) -> float:
        return self.history[self.best_epoch - 1].eval_accuracy if self.best_epoch else math.nan


class _Distiller(nn.Module):
    """Student + frozen teacher copy; the forward returns the student's logits and keeps the
    teacher's (and the matched features) for :meth:`loss`."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        config: DistillConfig,
        features: Mapping[str, str],
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = clone_model(teacher).eval().requires_grad_(False)
        self.config = config
        self.features = dict(features)
        self.adapters = nn.ModuleDict()
        self.teacher_logits: Tensor | None = None
        self.seen: dict[str, Tensor] = {}
        self.hooks = [
            *(self._hook(student, s, f"s:{s}") for s in self.features),
            *(self._hook(self.teacher, t, f"t:{s}") for s, t in self.features.items()),
        ]

    def _hook(self, root: nn.Module, name: str, key: str) -> Any:
        def store(_m: nn.Module, _i: Any, out: Tensor) -> None:
            self.seen[key] = out

        return root.get_submodule(name).register_forward_hook(store)

    def build_adapters(self, inputs: Tensor) -> None:
        with torch.no_grad():
            self.forward(inputs)
        for s in self.features:
            s_feat, t_feat = self.seen[f"s:{s}"], self.seen[f"t:{s}"]
            if s_feat.shape[1] != t_feat.shape[1]:
                conv = s_feat.dim() == 4
                layer: nn.Module = (nn.Conv2d if conv else nn.Linear)(
                    s_feat.shape[1], t_feat.shape[1], *((1,) if conv else ())
                )
                self.adapters[s.replace(".", "__")] = layer.to(s_feat.device)

    def forward(self, inputs: Tensor) -> Tensor:
        with torch.no_grad():
            self.teacher.eval()
            self.teacher_logits = logits_of(self.teacher(inputs))
        out: Tensor = self.student(inputs)
        return out

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        assert self.teacher_logits is not None
        if outputs.shape != self.teacher_logits.shape:
            raise ConfigError(
                f"distillation: the student's outputs {tuple(outputs.shape)} and the teacher's "
                f"{tuple(self.teacher_logits.shape)} differ in shape; the teacher must be the "
                "unpruned model (its classifier keeps the same classes)"
            )
        total = distillation_loss(logits_of(outputs), self.teacher_logits, targets, self.config)
        for s in self.features:
            s_feat = self.seen[f"s:{s}"]
            key = s.replace(".", "__")
            if key in self.adapters:
                s_feat = self.adapters[key](s_feat)
            total = total + self.config.feature_weight * feature_loss(s_feat, self.seen[f"t:{s}"])
        return total

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


def train_distilled(
    student: nn.Module,
    teacher: nn.Module,
    loader: Iterable[Any],
    distill: DistillConfig | None = None,
    **train_options: Any,
) -> TrainStats:
    """:func:`prunekit.train.train` of ``student`` (in place) on the distillation loss
    ``alpha * T^2 KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) CE`` (Hinton et
    al. 2015, "Distilling the Knowledge in a Neural Network") from a frozen copy of ``teacher``.
    ``train_options`` are ``train``'s (``epochs``, ``max_steps``, ``lr``, ``optimizer``, ...),
    with the same meaning, so a plain fine-tune becomes a distillation by changing the call."""
    if "loss_fn" in train_options:
        raise ConfigError("train_distilled: the loss is the distillation loss; loss_fn not allowed")
    distiller = _Distiller(student, teacher, distill or DistillConfig(), {})
    try:
        return train(distiller, loader, loss_fn=distiller.loss, **train_options)
    finally:
        distiller.close()


def _nonzero_masks(model: nn.Module) -> int:
    return int(sum(int(m.count_nonzero()) for m in masks_of(model).values()))


def finetune(
    model: nn.Module,
    train_loader: Iterable[Any],
    eval_loader: Iterable[Any] | None = None,
    config: FinetuneConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    distill: DistillConfig | None = None,
    features: Mapping[str, str] | None = None,
    on_step: StepCallback | None = None,
    loss_fn: LossFn | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place; with ``teacher``, distil from it (``features`` maps student
    module names to teacher module names for feature matching). ``loss_fn(outputs, targets)``
    replaces cross-entropy when there is no teacher, e.g. with a sparsity penalty
    (:func:`prunekit.methods.with_penalty`).

    ``keep_best`` restores the epoch with the best eval accuracy among the epochs whose masks
    are the final ones (so a schedule still pruning in early epochs cannot win with a denser
    model). ``on_step(step, model)`` gets the student and a step counted over all epochs.
    """
    config = config or FinetuneConfig()
    if teacher is not None and loss_fn is not None:
        raise ConfigError("finetune: give teacher= (distillation) or loss_fn=, not both")
    net: nn.Module = model
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    distiller = None
    if teacher is not None:
        distiller = _Distiller(model, teacher, distill or DistillConfig(), features or {})
        if features:
            distiller.build_adapters(next(iter(train_loader))[0])
        net, loss_fn = distiller, distiller.loss
    optimizer = make_optimizer(
        config.optimizer, net, lr=config.lr, weight_decay=config.weight_decay
    )
    per_epoch = _steps_per_epoch(train_loader, config.max_steps_per_epoch)
    total = max(per_epoch * config.epochs, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        if config.lr_schedule == "cosine"
        else (lambda s: 1.0),
    )
    done = 0

    def step_hook(step: int, _net: nn.Module) -> None:
        scheduler.step()
        if on_step is not None:
            on_step(done + step, model)

    result = FinetuneResult(model)
    candidates: list[tuple[float, int, int, dict[str, Tensor]]] = []
    bar = tqdm(
        range(1, config.epochs + 1),
        desc="finetune",
        unit="epoch",
        disable=None if config.progress else True,
    )
    try:
        for epoch in bar:
            stats = train(
                net,
                train_loader,
                epochs=1,
                max_steps=config.max_steps_per_epoch,
                optimizer=optimizer,
                loss_fn=loss_fn,
                progress=False,
                on_step=step_hook,
            )
            done += stats.steps
            ev = evaluate(model, eval_loader) if eval_loader is not None else None
            acc = ev.accuracy if ev is not None else -stats.loss
            result.history.append(
                EpochRecord(
                    epoch, stats.loss, ev.loss if ev else math.nan, ev.accuracy if ev else math.nan
                )
            )
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            candidates.append((acc, epoch, _nonzero_masks(model), state))
            bar.set_postfix(acc=f"{acc:.4f}", refresh=False)
    finally:
        bar.close()
        if distiller is not None:
            distiller.close()
    final_nonzero = candidates[-1][2]
    eligible = [c for c in candidates if c[2] == final_nonzero]
    best = max(eligible, key=lambda c: (c[0], c[1])) if config.keep_best else candidates[-1]
    model.load_state_dict(best[3])
    result.best_epoch = best[1]
    return result


def _steps_per_epoch(loader: Iterable[Any], cap: int | None) -> int:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n = cap or 1
    return min(n, cap) if cap else n
