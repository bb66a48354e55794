"""Statistics of a layer's inputs over the calibration data, gathered by forward hooks.

For a Linear layer ``y = x W^T`` with inputs ``X`` (one row per token), Wanda needs the norm of each
input feature, ``||X_j||_2``, and SparseGPT needs the Hessian of the layer-wise reconstruction
error, ``H = 2 X^T X`` (``[in, in]``). :func:`record_inputs` is a context manager that adds both
up (the Hessian only when asked) while the block runs, and removes its hooks on exit.

Layers that read the same input (a LLaMA block's ``q/k/v_proj`` read one normalised hidden state,
``gate/up_proj`` another) have the same statistics; ``record_inputs(..., share=True)`` records them
once and hands the one :class:`InputStats` to each of those layers, which saves a ``[in, in]``
float64 sum per extra layer (Frantar & Alistarh 2023 share the Hessian the same way).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import DataError

_ROWS_PER_CHUNK = 256
"""Rows of the ``[in, in]`` sum converted at a time (bounds the float64 temporaries)."""


@dataclass
class InputStats:
    """Running sums over every input row (token) a layer saw, in float64: the sums do not
    depend on the order the rows came in to float32 precision (one process or several).

    :meth:`finish_hessian` replaces the float64 ``gram`` by the float32 Hessian, half its size,
    once every row is in (after any reduction over processes)."""

    features: int
    hessian_wanted: bool = False
    rows: int = 0
    sq_norms: Tensor = field(init=False)
    gram: Tensor | None = field(init=False)
    _hessian: Tensor | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.sq_norms = torch.zeros(self.features, dtype=torch.float64)
        self.gram = (
            torch.zeros(self.features, self.features, dtype=torch.float64)
            if self.hessian_wanted
            else None
        )

    def add(self, x: Tensor) -> None:
        """Add a batch of inputs ``[..., features]``."""
        if self._hessian is not None:
            raise DataError(
                "these input statistics are finished (finish_hessian) and take no more rows"
            )
        rows = x.detach().reshape(-1, self.features).float().cpu()
        self.rows += rows.shape[0]
        self.sq_norms += rows.double().pow(2).sum(dim=0)
        if self.gram is not None:
            self.gram.addmm_(rows.T.double(), rows.double())

    def column_norms(self) -> Tensor:
        """``||X_j||_2`` for every input feature ``j`` (what Wanda multiplies ``|W|`` by)."""
        return self.sq_norms.sqrt().float()

    def hessian(self) -> Tensor:
        """``H = 2 X^T X / rows`` in float32, the Hessian of ``||X W^T - X W'^T||^2 / rows`` in
        each row (the same tensor on every call once :meth:`finish_hessian` has run)."""
        if self._hessian is not None:
            return self._hessian
        if self.gram is None:
            raise ValueError("the Hessian was not recorded (record_inputs(..., hessian=True))")
        return self._scaled(self.gram)

    def finish_hessian(self) -> None:
        """Keep only the float32 Hessian: the float64 ``gram`` is freed (no-op without one)."""
        if self.gram is not None:
            self._hessian = self._scaled(self.gram)
            self.gram = None

    def _scaled(self, gram: Tensor) -> Tensor:
        """``(2 * gram / rows).float()``, a block of rows at a time (elementwise, so the same
        bits as in one go, without two float64 ``[in, in]`` temporaries)."""
        out = torch.empty(gram.shape, dtype=torch.float32)
        rows = max(self.rows, 1)
        for start in range(0, gram.shape[0], _ROWS_PER_CHUNK):
            part = slice(start, start + _ROWS_PER_CHUNK)
            out[part] = (2.0 * gram[part] / rows).float()
        return out


@contextmanager
def record_inputs(
    layers: Mapping[str, nn.Module], *, hessian: bool = False, share: bool = False
) -> Iterator[dict[str, InputStats]]:
    """Record the inputs of every layer in ``layers`` (name -> Linear) while the block runs.

    With ``share``, a layer whose input is the very tensor (same object, not modified in place)
    that an earlier layer of the same call just read gets that layer's :class:`InputStats`
    (the same object under both names) instead of a second copy of the sums. Which layers share
    is fixed by the first call; a later call that breaks it is refused. Entries then appear as
    layers first run (a layer that never ran has none)."""
    stats: dict[str, InputStats] = {}
    handles = []
    owner_of: dict[str, str] = {}  # sharing layer -> the layer that records for it
    latest: dict[str, tuple[Tensor, int]] = {}  # recording layer -> its last input, version

    def features(module: nn.Module) -> int:
        weight = module.weight
        assert isinstance(weight, Tensor)
        return int(weight.shape[1])

    if not share:
        stats.update({name: InputStats(features(m), hessian) for name, m in layers.items()})

    def shared_hook(name: str, x: Tensor) -> None:
        seen = owner_of.get(name)
        if seen is not None:
            last, version = latest[seen]
            if x is not last or x._version != version:
                raise DataError(
                    f"layer {name!r} read the same input as {seen!r} on the first calibration "
                    "window but not on a later one; record their inputs with share=False"
                )
            return
        if name not in stats:  # first call: share with a layer that just read this tensor
            match = [n for n, (t, v) in latest.items() if t is x and x._version == v]
            if match:
                owner_of[name] = match[0]
                stats[name] = stats[match[0]]
                return
            stats[name] = InputStats(features(layers[name]), hessian)
        latest[name] = (x, x._version)
        stats[name].add(x)

    for name, module in layers.items():

        def hook(module: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            if share:
                shared_hook(name, args[0])
            else:
                stats[name].add(args[0])

        handles.append(module.register_forward_hook(hook))
    try:
        yield stats
    finally:
        latest.clear()
        for handle in handles:
            handle.remove()
