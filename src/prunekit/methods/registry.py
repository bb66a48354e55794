"""The registry of training-time pruning methods (``prunekit list`` shows it): what each one is,
the paper, and the class or function that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from prunekit.methods.dst import DynamicSparse
from prunekit.methods.lottery import find_ticket
from prunekit.methods.movement import MovementPruning
from prunekit.methods.regularizers import bn_scale_penalty, group_lasso_penalty, l1_penalty
from prunekit.methods.soft_filter import SoftFilterPruning
from prunekit.registry import Registry

MethodKind = Literal["ticket", "dynamic sparse", "mask", "penalty"]


@dataclass(frozen=True)
class TrainingMethod:
    """A training-time method: ``entry`` is what a user calls (a class or function)."""

    name: str
    kind: MethodKind
    summary: str
    entry: Callable[..., Any]


METHODS: Registry[TrainingMethod] = Registry(
    "training-time method",
    {
        m.name: m
        for m in (
            TrainingMethod(
                "lottery",
                "ticket",
                "iterative magnitude pruning with rewinding (Frankle & Carbin 2019)",
                find_ticket,
            ),
            TrainingMethod(
                "rigl",
                "dynamic sparse",
                "drop small weights, regrow by gradient (Evci et al. 2020)",
                DynamicSparse,
            ),
            TrainingMethod(
                "set",
                "dynamic sparse",
                "drop small weights, regrow at random (Mocanu et al. 2018)",
                DynamicSparse,
            ),
            TrainingMethod(
                "movement",
                "mask",
                "learned scores, keep what moves away from 0 (Sanh et al. 2020)",
                MovementPruning,
            ),
            TrainingMethod(
                "soft-filter",
                "mask",
                "zero the weakest filters, let them regrow (He et al. 2018)",
                SoftFilterPruning,
            ),
            TrainingMethod("l1", "penalty", "L1 norm of the weights in the loss", l1_penalty),
            TrainingMethod(
                "group-lasso",
                "penalty",
                "L2 norm per group in the loss (Wen et al. 2016)",
                group_lasso_penalty,
            ),
            TrainingMethod(
                "slimming",
                "penalty",
                "L1 on BatchNorm scales (Liu et al. 2017, network slimming)",
                bn_scale_penalty,
            ),
        )
    },
)
"""Training-time pruning methods by name (``rigl`` and ``set`` are ``DynamicSparse`` with
``DSTConfig(method=...)``)."""
