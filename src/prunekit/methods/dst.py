"""Dynamic sparse training at constant sparsity: RigL and SET.

Both start from a random sparse mask and every ``update_every`` steps move a fraction of each
layer's active weights: drop the smallest-magnitude active weights, then grow as many new ones,
so every layer's sparsity stays exactly the same. SET (Mocanu et al. 2018) grows at random;
RigL (Evci et al. 2020, "Rigging the Lottery") grows where the dense gradient is largest and
decays the update fraction with a cosine to 0 at ``end_step``. Grown weights start at zero.

How the sparsity is spread over the layers is fixed at the start (``DSTConfig.distribution``):
``"uniform"`` gives every layer the same sparsity; ``"erk"`` is the Erdős–Rényi-Kernel
distribution of Evci et al. 2020 (Sec. 3), which keeps small layers denser
(:func:`erk_densities`) and removes exactly ``round(sparsity * N)`` of the ``N`` masked weights
in all (:func:`keep_counts`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.core.groups import Group
from prunekit.core.modes import module_mode
from prunekit.errors import ConfigError, check_sparsity
from prunekit.granularity import build_groups, get_granularity
from prunekit.masks import apply_masks, masks_of
from prunekit.recovery.originals import mask_buffer, original_tensor
from prunekit.train import LossFn

Distribution = Literal["uniform", "erk"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("uniform", "erk")


@dataclass(frozen=True)
class DSTConfig:
    """``method``: ``"rigl"`` or ``"set"``; ``sparsity`` of all the masked weights together,
    spread over the layers by ``distribution`` (``"uniform"``: the same in every layer;
    ``"erk"``: Erdős–Rényi-Kernel); ``drop_fraction`` of the active weights moved at each
    update (RigL decays it to 0 at ``end_step``)."""

    sparsity: float = 0.9
    method: Literal["rigl", "set"] = "rigl"
    distribution: Distribution = "uniform"
    update_every: int = 100
    drop_fraction: float = 0.3
    end_step: int | None = None
    seed: int = 0
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        if self.method not in ("rigl", "set"):
            raise ConfigError(f"method must be 'rigl' or 'set', got {self.method!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}"
            )
        if self.update_every < 1 or not 0 < self.drop_fraction <= 1:
            raise ConfigError("update_every must be >= 1 and drop_fraction in (0, 1]")


class DynamicSparse:
    """Call after every optimizer step (``on_step``); masks ``model`` at construction.

    RigL needs ``data`` (batches of ``(inputs, targets)``; the first ``n_batches`` of it are used
    at every update) to measure the dense gradient.
    """

    def __init__(
        self,
        model: nn.Module,
        config: DSTConfig | None = None,
        *,
        data: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        n_batches: int = 1,
    ) -> None:
        self.config = config or DSTConfig()
        if self.config.method == "rigl" and data is None:
            raise ConfigError("RigL grows by gradient and needs data=(batches of inputs, targets)")
        self.data, self.loss_fn, self.n_batches = data, loss_fn, n_batches
        self.groups: list[Group] = build_groups(
            model, get_granularity("element"), self.config.include, self.config.exclude
        )
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.updates = 0
        shapes = {g.root.tensor: tuple(g.root.view.shape) for g in self.groups}
        self.keep = keep_counts(shapes, self.config.sparsity, self.config.distribution)
        existing = masks_of(model)
        fresh = {
            g.root.tensor: self._random_mask(g)
            for g in self.groups
            if g.root.tensor not in existing
        }
        apply_masks(model, fresh)

    def _random_mask(self, group: Group) -> Tensor:
        shape = group.root.view.shape
        n = math.prod(shape)
        keep = self.keep[group.root.tensor]
        order = torch.randperm(n, generator=self.generator)
        flat = torch.zeros(n)
        flat[order[:keep]] = 1.0
        return flat.reshape(shape)

    def fraction(self, step: int) -> float:
        end = self.config.end_step
        if self.config.method == "set" or end is None:
            return self.config.drop_fraction
        return self.config.drop_fraction * 0.5 * (1 + math.cos(math.pi * min(step, end) / end))

    def __call__(self, step: int, model: nn.Module) -> bool:
        end = self.config.end_step
        if step % self.config.update_every or (end is not None and step >= end):
            return False
        self.update(model, self.fraction(step))
        return True

    @torch.no_grad()
    def update(self, model: nn.Module, fraction: float) -> None:
        """Drop ``fraction`` of each layer's active weights by magnitude, grow as many."""
        grow_scores = self._grow_scores(model)
        for group in self.groups:
            name = group.root.tensor
            mask = mask_buffer(model, name)
            weight = original_tensor(model, name)
            active = mask.bool().flatten()
            k = int(fraction * int(active.sum()))
            if k == 0:
                continue
            magnitude = torch.where(active, weight.abs().flatten(), torch.inf)
            drop = torch.topk(magnitude, k, largest=False).indices
            new = active.clone()
            new[drop] = False
            score = grow_scores[name].flatten().to(weight.device)
            score = torch.where(new, -torch.inf, score)
            grow = torch.topk(score, k).indices
            new[grow] = True
            weight.view(-1)[grow] = 0.0
            mask.copy_(new.reshape(mask.shape).to(mask.dtype))
        self.updates += 1

    def _grow_scores(self, model: nn.Module) -> dict[str, Tensor]:
        if self.config.method == "set":
            return {
                g.root.tensor: torch.rand(g.root.view.shape, generator=self.generator)
                for g in self.groups
            }
        return dense_gradients(
            model, [g.root.tensor for g in self.groups], self.data, self.loss_fn, self.n_batches
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])


def erk_densities(shapes: Mapping[str, Sequence[int]], sparsity: float) -> dict[str, float]:
    """Per-layer density (fraction kept) of the Erdős–Rényi-Kernel distribution.

    Evci et al. 2020 ("Rigging the Lottery", Sec. 3): layer ``l`` keeps a fraction proportional
    to ``sum(shape) / prod(shape)``, i.e. ``(n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w)``
    for a convolution and ``(n_in + n_out) / (n_in n_out)`` for a linear layer (Erdős–Rényi),
    with one factor ``eps`` for all layers chosen so that the kept weights add up to
    ``(1 - sparsity) * N``. A layer whose density would exceed 1 is kept dense and ``eps`` is
    solved again over the others; capping only ever raises ``eps``, so every layer over 1 can be
    capped at once.
    """
    check_sparsity(sparsity)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    budget = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [name for name in shapes if name not in dense]
        if not free:
            return dict.fromkeys(shapes, 1.0)
        left = budget - sum(sizes[name] for name in dense)
        eps = left / sum(raw[name] * sizes[name] for name in free)
        over = {name for name in free if eps * raw[name] > 1.0}
        if not over:
            return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}
        dense |= over


def keep_counts(
    shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: Distribution = "uniform"
) -> dict[str, int]:
    """Weights each layer keeps under ``distribution``.

    ``"uniform"``: every layer keeps ``n - round(sparsity * n)`` of its ``n``. ``"erk"``: the
    :func:`erk_densities` times each layer's size, rounded by largest remainder so that exactly
    ``N - round(sparsity * N)`` of the ``N`` weights are kept in all.
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    if distribution == "uniform":
        return {name: n - round(check_sparsity(sparsity) * n) for name, n in sizes.items()}
    if distribution != "erk":
        raise ConfigError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    total = sum(sizes.values())
    wanted = {name: d * sizes[name] for name, d in erk_densities(shapes, sparsity).items()}
    counts = {name: min(math.floor(w), sizes[name]) for name, w in wanted.items()}
    short = total - round(sparsity * total) - sum(counts.values())
    open_layers = [name for name in wanted if counts[name] < sizes[name]]
    by_remainder = sorted(open_layers, key=lambda name: wanted[name] - counts[name], reverse=True)
    for name in by_remainder[: max(short, 0)]:
        counts[name] += 1
    return counts


def layer_sparsity(model: nn.Module, names: Sequence[str]) -> dict[str, float]:
    """Fraction of zeros in each named tensor's mask."""
    masks = masks_of(model)
    return {n: 1.0 - float(masks[n].mean()) for n in names}


def dense_gradients(
    model: nn.Module,
    names: Sequence[str],
    data: Iterable[Any] | None,
    loss_fn: LossFn | None = None,
    n_batches: int = 1,
) -> dict[str, Tensor]:
    """``|dL/dW|`` with respect to the *effective* (masked) weights, dense: masked positions
    get their gradient too. Each mask is briefly set to ones over originals holding the masked
    values; masks, originals, ``.grad`` and BatchNorm statistics (eval mode) are unchanged after.
    """
    loss_fn = loss_fn or F.cross_entropy
    originals = {n: original_tensor(model, n) for n in names}
    saved = {n: (t.detach().clone(), mask_buffer(model, n).clone()) for n, t in originals.items()}
    totals = {n: torch.zeros_like(t) for n, t in originals.items()}
    device = next(iter(originals.values())).device
    try:
        with torch.no_grad():
            for n, t in originals.items():
                t.mul_(saved[n][1].to(t))
                mask_buffer(model, n).fill_(1.0)
        with module_mode(model, training=False), torch.enable_grad():
            for inputs, targets in islice(iter(data or []), n_batches):
                loss = loss_fn(model(inputs.to(device)), targets.to(device))
                grads = torch.autograd.grad(loss, list(originals.values()), allow_unused=True)
                for n, g in zip(originals, grads, strict=True):
                    if g is not None:
                        totals[n] += g.abs()
    finally:
        with torch.no_grad():
            for n, t in originals.items():
                t.copy_(saved[n][0])
                mask_buffer(model, n).copy_(saved[n][1])
    return totals
