"""Statistics of a layer's inputs over the calibration data, gathered by forward hooks.

For a Linear layer ``y = x W^T`` with inputs ``X`` (one row per token), Wanda needs the norm of each
input feature, ``||X_j||_2``, and SparseGPT needs the Hessian of the layer-wise reconstruction
error, ``H = 2 X^T X`` (``[in, in]``). :func:`record_inputs` is a context manager that adds both
up (the Hessian only when asked) while the block runs, and removes its hooks on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class InputStats:
    """Running sums over every input row (token) a layer saw, in float64: the sums do not
    depend on the order the rows came in to float32 precision (one process or several)."""

    features: int
    hessian_wanted: bool = False
    rows: int = 0
    sq_norms: Tensor = field(init=False)
    gram: Tensor | None = field(init=False)

    def __post_init__(self) -> None:
        self.sq_norms = torch.zeros(self.features, dtype=torch.float64)
        self.gram = (
            torch.zeros(self.features, self.features, dtype=torch.float64)
            if self.hessian_wanted
            else None
        )

    def add(self, x: Tensor) -> None:
        """Add a batch of inputs ``[..., features]``."""
        rows = x.detach().reshape(-1, self.features).float().cpu()
        self.rows += rows.shape[0]
        self.sq_norms += rows.double().pow(2).sum(dim=0)
        if self.gram is not None:
            self.gram.addmm_(rows.T.double(), rows.double())

    def column_norms(self) -> Tensor:
        """``||X_j||_2`` for every input feature ``j`` (what Wanda multiplies ``|W|`` by)."""
        return self.sq_norms.sqrt().float()

    def hessian(self) -> Tensor:
        """``H = 2 X^T X / rows``, the Hessian of ``||X W^T - X W'^T||^2 / rows`` in each row."""
        if self.gram is None:
            raise ValueError("the Hessian was not recorded (record_inputs(..., hessian=True))")
        return (2.0 * self.gram / max(self.rows, 1)).float()


@contextmanager
def record_inputs(
    layers: Mapping[str, nn.Module], *, hessian: bool = False
) -> Iterator[dict[str, InputStats]]:
    """Record the inputs of every layer in ``layers`` (name -> Linear) while the block runs."""
    stats: dict[str, InputStats] = {}
    handles = []
    for name, module in layers.items():
        weight = module.weight
        assert isinstance(weight, Tensor)
        features = int(weight.shape[1])
        stats[name] = InputStats(features, hessian)

        def hook(module: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            stats[name].add(args[0])

        handles.append(module.register_forward_hook(hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
