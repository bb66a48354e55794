"""Movement pruning with learnable scores (Sanh et al. 2020, "Movement Pruning").

Every pruned weight gets a score ``S`` trained with the network: the forward pass uses
``W * TopK(S)`` and the straight-through estimator passes the mask's gradient to ``S``, so
``dL/dS = dL/dW' * W`` and a weight's score grows while it moves away from zero. The fraction
removed per layer follows a schedule (cubic in the paper); :meth:`MovementPruning.finalize`
turns the learnt masks into ordinary prunekit masks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.core.groups import Masks
from prunekit.errors import ConfigError
from prunekit.granularity import build_groups, get_granularity
from prunekit.masks import apply_masks
from prunekit.schedules import Schedule


class _TopKStraightThrough(torch.autograd.Function):
    """Forward: 1 for the ``numel - n_removed`` largest scores, 0 else. Backward: identity."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, n_removed: int) -> Tensor:
        mask = torch.ones_like(scores)
        if n_removed > 0:
            lowest = torch.topk(scores.flatten(), n_removed, largest=False).indices
            mask.view(-1)[lowest] = 0.0
        return mask

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class MovementMask(nn.Module):
    """A parametrization ``w -> w * TopK(scores)`` with trainable ``scores``."""

    def __init__(self, shape: torch.Size, sparsity: float = 0.0) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.zeros(shape))
        self.sparsity = sparsity

    def hard_mask(self) -> Tensor:
        n_removed = round(self.sparsity * self.scores.numel())
        mask: Tensor = _TopKStraightThrough.apply(self.scores, n_removed)
        return mask

    def forward(self, w: Tensor) -> Tensor:
        return w * self.hard_mask().to(w.dtype)


class MovementPruning:
    """Attach movement masks to every weight matched by ``include``/``exclude`` (build it
    *before* the optimizer, so the scores are trained) and call it each step to follow
    ``schedule``."""

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule,
        include: tuple[str, ...] = ("*",),
        exclude: tuple[str, ...] = (),
    ) -> None:
        self.schedule = schedule
        groups = build_groups(model, get_granularity("element"), include, exclude)
        self.names = [g.root.tensor for g in groups]
        self.parts: dict[str, MovementMask] = {}
        for name in self.names:
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            if parametrize.is_parametrized(module, attr):
                raise ConfigError(f"{name!r} is already masked; movement pruning needs it bare")
            part = MovementMask(getattr(module, attr).shape, schedule(0))
            parametrize.register_parametrization(module, attr, part)
            self.parts[name] = part

    def __call__(self, step: int, model: nn.Module) -> None:
        for part in self.parts.values():
            part.sparsity = self.schedule(step)

    def masks(self) -> Masks:
        return {name: part.hard_mask().detach().clone() for name, part in self.parts.items()}

    def finalize(self, model: nn.Module) -> Masks:
        """Replace the learnt masks by ordinary 0/1 prunekit masks; returns them."""
        masks = self.masks()
        for name in self.names:
            module_name, _, attr = name.rpartition(".")
            parametrize.remove_parametrizations(
                model.get_submodule(module_name), attr, leave_parametrized=False
            )
        apply_masks(model, masks)
        return masks

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
