"""Scoring data: the batches, loss and forward function that data-driven estimators use.

Batches are materialised once (the first ``n_batches`` of a loader), so every estimator in a
comparison sees exactly the same data and an exhausted iterator cannot silently give zero batches.
Every batch is checked when the data is built: an empty batch, or one holding NaN or infinite
values, is refused with its index and the position of the first bad value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from prunekit.core.outputs import cross_entropy
from prunekit.errors import DataError
from prunekit.graph.finite import check_finite, check_not_empty

Batch = Any
LossFn = Callable[[Tensor, Tensor], Tensor]
ForwardFn = Callable[[nn.Module, Batch], tuple[Tensor, Tensor]]


def default_forward(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """Run ``model`` on a ``(inputs, targets, ...)`` batch; return ``(outputs, targets)``."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DataError(
            "a batch must be a tuple (inputs, targets); for other batch formats pass "
            "forward=lambda model, batch: (outputs, targets)"
        )
    return model(batch[0]), batch[1]


@dataclass(frozen=True)
class ScoringData:
    """Batches plus how to turn a batch into a loss.

    Attributes:
        batches: the batches, used in order.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy by default.
        forward: ``forward(model, batch) -> (outputs, targets)``.
        progress: show a progress bar over batches.
    """

    batches: Sequence[Batch]
    loss_fn: LossFn = cross_entropy
    forward: ForwardFn = default_forward
    progress: bool = True

    def __post_init__(self) -> None:
        if len(self.batches) == 0:
            raise DataError("scoring data has no batches (the loader is empty)")
        for i, batch in enumerate(self.batches):
            check_not_empty(batch, f"scoring batch {i}")
            check_finite(batch, f"scoring batch {i}")

    @classmethod
    def from_loader(
        cls,
        loader: Iterable[Batch],
        *,
        n_batches: int | None = 8,
        loss_fn: LossFn = cross_entropy,
        forward: ForwardFn = default_forward,
        progress: bool = True,
    ) -> ScoringData:
        """Take the first ``n_batches`` batches of ``loader`` (all if ``None``)."""
        if n_batches is not None and n_batches < 1:
            raise DataError(f"n_batches must be at least 1, got {n_batches}")
        batches = list(itertools.islice(iter(loader), n_batches))
        if not batches:
            raise DataError(f"the data loader {type(loader).__name__} yielded no batches")
        return cls(batches, loss_fn, forward, progress)


def as_scoring_data(
    data: ScoringData | Iterable[Batch] | None,
    loss_fn: LossFn | None = None,
    n_batches: int | None = 8,
) -> ScoringData | None:
    """Accept a ready :class:`ScoringData`, a loader (or list of batches), or ``None``."""
    if data is None or isinstance(data, ScoringData):
        return data
    return ScoringData.from_loader(data, n_batches=n_batches, loss_fn=loss_fn or cross_entropy)
