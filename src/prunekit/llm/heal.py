"""Healing a pruned language model: a short fine-tune on local text after width or depth pruning.

Two methods, one loop:

- ``"lora"``: low-rank adapters on every Linear of the blocks (Hu et al. 2021, *LoRA: Low-Rank
  Adaptation of Large Language Models*), trained with ``peft`` and merged back into the weights,
  so the healed model has the pruned model's architecture and no ``peft`` dependency at load
  time. This is the recovery step of LLM-Pruner (Ma et al. 2023).
- ``"full"``: every parameter trained.

Either can learn from the dense model as well as from the text (knowledge distillation, Hinton
et al. 2015, as in Sheared-LLaMA's and Minitron's recovery): the loss is
``(1 - distill) * next-token cross-entropy + distill * T^2 * KL(teacher || student)``.

Weights that are exactly zero before healing (unstructured or N:M sparsity) stay zero by default
(``keep_zeros``): after every full fine-tuning step, and once after merging the adapters.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.errors import ConfigError, DataError
from prunekit.llm.perplexity import logits_of
from prunekit.recovery.distill import soft_kl

HealMethod = Literal["lora", "full"]

DEFAULT_LR: dict[str, float] = {"lora": 2e-4, "full": 2e-5}
"""Learning rates when none is given: the usual LoRA rate (Hu et al. 2021) and a full
fine-tuning rate a hundred times smaller, both for AdamW."""


@dataclass(frozen=True)
class HealConfig:
    """How to heal.

    Attributes:
        method: ``"lora"`` (adapters, merged at the end) or ``"full"``.
        steps: optimizer steps; each sees ``batch_size`` windows of calibration text.
        batch_size: windows per step.
        lr: AdamW learning rate (default: ``DEFAULT_LR[method]``).
        rank, alpha, dropout: LoRA rank, scaling numerator and adapter dropout.
        target_modules: LoRA targets: ``"all-linear"`` (every Linear but the output head) or
            names of Linear modules (``("q_proj", "v_proj")``).
        distill: weight of the distillation term, in ``[0, 1]``; needs a teacher when > 0.
        temperature: distillation temperature.
        keep_zeros: weights that are exactly zero before healing are zero after it.
        max_grad_norm: gradient clipping (``None``: off).
        seed: seeds the order of the windows and the adapters' initialisation.
    """

    method: HealMethod = "lora"
    steps: int = 100
    batch_size: int = 4
    lr: float | None = None
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    distill: float = 0.0
    temperature: float = 1.0
    keep_zeros: bool = True
    max_grad_norm: float | None = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in DEFAULT_LR:
            raise ConfigError(f"heal method must be 'lora' or 'full', got {self.method!r}")
        for name in ("steps", "batch_size", "rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"heal {name} must be an integer >= 1, got {value!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"heal lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.distill <= 1.0:
            raise ConfigError(f"heal distill must be in [0, 1], got {self.distill!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"heal temperature must be positive, got {self.temperature!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"heal dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]


@dataclass
class HealResult:
    """The healed model (merged, plain PyTorch) and how the healing went."""

    model: nn.Module
    config: HealConfig
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    trainable_params: int = 0
    seconds: float = 0.0

    def __repr__(self) -> str:
        first = f"{self.losses[0]:.3f}" if self.losses else "-"
        last = f"{self.losses[-1]:.3f}" if self.losses else "-"
        return (
            f"HealResult(method={self.config.method!r}, steps={len(self.losses)}, "
            f"tokens={self.tokens}, loss {first} -> {last}, {self.seconds:.1f} s)"
        )


def check_windows(windows: Tensor, batch_size: int) -> Tensor:
    """``windows`` as a ``[n, seq_len]`` integer tensor with ``seq_len >= 2``, or a DataError."""
    if not isinstance(windows, Tensor) or windows.dim() != 2:
        shape = tuple(windows.shape) if isinstance(windows, Tensor) else type(windows).__name__
        raise DataError(f"healing needs token windows of shape [n, seq_len], got {shape}")
    if windows.dtype.is_floating_point or windows.dtype == torch.bool:
        raise DataError(f"healing needs integer token ids, got dtype {windows.dtype}")
    if windows.shape[0] < 1 or windows.shape[1] < 2:
        raise DataError(
            f"healing needs at least one window of 2+ tokens, got shape {tuple(windows.shape)}"
        )
    if windows.shape[0] < batch_size:
        raise DataError(
            f"healing batch_size={batch_size} is larger than the {windows.shape[0]} windows given"
        )
    return windows.long()


def zero_masks(model: nn.Module) -> dict[str, Tensor]:
    """``name -> (weight != 0)`` for every Linear weight that holds exact zeros."""
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            keep = module.weight.detach() != 0
            if not bool(keep.all()):
                masks[name] = keep
    return masks


def apply_zero_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero again the weights recorded by :func:`zero_masks`."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, keep in masks.items():
            modules[name].weight.mul_(keep.to(modules[name].weight.dtype))


def lm_loss(logits: Tensor, ids: Tensor) -> Tensor:
    """Mean next-token cross-entropy of ``logits [b, t, V]`` on ``ids [b, t]``."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


def _loss(student: nn.Module, teacher: nn.Module | None, ids: Tensor, config: HealConfig) -> Tensor:
    logits = logits_of(student(input_ids=ids))
    hard = lm_loss(logits, ids)
    if teacher is None or config.distill == 0.0:
        return hard
    with torch.no_grad():
        target = logits_of(teacher(input_ids=ids))
    if target.shape != logits.shape:
        raise ConfigError(
            f"the teacher's logits {tuple(target.shape)} and the student's "
            f"{tuple(logits.shape)} differ: distillation needs the same vocabulary"
        )
    soft = soft_kl(logits.flatten(0, 1).float(), target.flatten(0, 1).float(), config.temperature)
    return (1.0 - config.distill) * hard + config.distill * soft


def _with_adapters(model: nn.Module, config: HealConfig) -> nn.Module:
    """``model`` wrapped by ``peft`` with LoRA adapters; only the adapters train."""
    ensure_torchvision_ops()  # peft imports transformers, which imports torchvision
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ConfigError(
            "LoRA healing needs peft: pip install -c constraints.txt 'prunekit[hf]'"
        ) from error
    targets = config.target_modules
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as error:  # e.g. target modules not found
        raise ConfigError(f"LoRA adapters could not be attached: {error}") from error


def _batches(windows: Tensor, batch_size: int, steps: int, seed: int) -> list[Tensor]:
    """``steps`` batches of windows, in a seeded order that visits every window once per pass."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order.extend(torch.randperm(windows.shape[0], generator=generator).tolist())
    return [windows[order[i * batch_size : (i + 1) * batch_size]] for i in range(steps)]


def heal(
    model: nn.Module,
    windows: Tensor,
    config: HealConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    inplace: bool = False,
    progress: bool = False,
) -> HealResult:
    """Fine-tune a pruned causal language model on token ``windows`` (``[n, seq_len]``, e.g.
    from :func:`prunekit.llm.calibration_windows`) and return it merged.

    The user's ``model`` is not modified unless ``inplace=True``; ``teacher`` (the dense model,
    needed when ``config.distill > 0``) is only read. A non-finite loss stops the healing with
    an error and leaves the user's model as it was.
    """
    config = config or HealConfig()
    ids = check_windows(windows, config.batch_size)
    if config.distill > 0 and teacher is None:
        raise ConfigError(f"heal distill={config.distill} needs the dense model as teacher=")
    start = time.perf_counter()
    student = copy.deepcopy(model)
    masks = zero_masks(student) if config.keep_zeros else {}
    torch.manual_seed(config.seed)
    trained = _with_adapters(student, config) if config.method == "lora" else student
    trainable = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    if teacher is not None:
        teacher.eval()
    trained.train()
    losses: list[float] = []
    batches = _batches(ids, config.batch_size, config.steps, config.seed)
    bar = tqdm(batches, desc=f"heal ({config.method})", unit="step", disable=not progress)
    for step, batch in enumerate(bar):
        loss = _loss(trained, teacher, batch, config)
        if not torch.isfinite(loss):
            raise DataError(f"healing loss is {loss.item()} at step {step}; the model is unchanged")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        if config.method == "full" and masks:
            apply_zero_masks(trained, masks)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    healed = trained.merge_and_unload() if config.method == "lora" else trained  # type: ignore[operator]
    if masks:
        apply_zero_masks(healed, masks)
    healed.eval()
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, parameter in healed.named_parameters():
        parameter.requires_grad_(flags.get(name, True))
    if inplace:
        model.load_state_dict(healed.state_dict())
        healed = model.eval()
    return HealResult(
        model=healed,
        config=config,
        losses=losses,
        tokens=config.steps * config.batch_size * ids.shape[1],
        trainable_params=sum(p.numel() for p in trainable),
        seconds=time.perf_counter() - start,
    )
