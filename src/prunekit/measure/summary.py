"""Every measurement of a model in one record, and before/after comparisons of two records.

:func:`measure` only reads the model: forward passes run in eval mode without gradients, each
submodule's train/eval flag is restored, and sizes are computed from the effective tensors
without baking any mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from prunekit.core.modes import eval_mode
from prunekit.errors import ConfigError, DataError
from prunekit.masks import bake_masks, clone_model, masks_of
from prunekit.measure.effective import effective_parameters, effective_state_dict
from prunekit.measure.inputs import ExampleInputs
from prunekit.measure.latency import measure_latency
from prunekit.measure.macs import MacCount, count_macs, effective_macs
from prunekit.measure.params import sparsity_of
from prunekit.measure.size import dense_size, sparse_size

EvalFn = Callable[[nn.Module], Mapping[str, float]]
"""A user function that evaluates a model and returns named task metrics (accuracy, loss, ...)."""

RowKind = Literal["count", "fraction", "bytes", "ms", "metric"]


@dataclass(frozen=True)
class ModelStats:
    """Measurements of one model.

    Attributes:
        params: parameters, each shared tensor once.
        nonzeros: parameter entries that are not zero (masks applied).
        sparsity: ``1 - nonzeros / params`` over all parameters (biases and norms included).
        macs: dense multiply-accumulates of one forward pass on the example inputs.
        effective_macs: MACs left when zero weights are skipped (see :mod:`prunekit.measure.macs`).
        dense_bytes: bytes of the effective state dict as plain safetensors.
        sparse_bytes: bytes of the effective state dict in the sparse bitmask encoding.
        latency_ms: median forward-pass time, or ``None`` if latency was not measured.
        metric: task metrics returned by the evaluation function, by name.
    """

    params: int
    nonzeros: int
    sparsity: float
    macs: int
    effective_macs: int
    dense_bytes: int
    sparse_bytes: int
    latency_ms: float | None = None
    metric: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One quantity before and after, with ``ratio = after / before``, ``change = after - before``.

    ``ratio`` is ``None`` when ``before`` is 0 or either side is missing; ``change`` is ``None``
    when either side is missing. ``kind`` says how to show the values (see the report tables).
    """

    name: str
    kind: RowKind
    before: float | None
    after: float | None
    ratio: float | None
    change: float | None


def _metrics(model: nn.Module, eval_fn: EvalFn) -> dict[str, float]:
    name = getattr(eval_fn, "__name__", type(eval_fn).__name__)
    try:
        with eval_mode(model):
            result = eval_fn(model)
    except Exception as err:
        raise DataError(f"eval_fn {name!r} failed: {type(err).__name__}: {err}") from err
    if not isinstance(result, Mapping):
        raise ConfigError(
            f"eval_fn {name!r} must return a mapping of metric name to number, "
            f"got {type(result).__name__}"
        )
    try:
        return {str(k): float(v) for k, v in result.items()}
    except (TypeError, ValueError) as err:
        raise ConfigError(f"eval_fn {name!r} returned a non-numeric metric: {err}") from err


def _deployed_latency(model: nn.Module, example_inputs: ExampleInputs) -> float:
    if masks_of(model):
        model = clone_model(model)
        bake_masks(model)
    return measure_latency(model, example_inputs).median_ms


def measure(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    eval_fn: EvalFn | None = None,
    latency: bool = True,
    macs: MacCount | None = None,
) -> ModelStats:
    """Measure ``model`` on ``example_inputs`` without changing it.

    ``eval_fn(model)`` is called (in eval mode, flags restored after) to add task metrics;
    ``latency=False`` skips the timing, which is the slow and noisy part. A masked model is timed
    as it would be deployed: on a copy with its masks baked in (zeros in dense weights), so the
    mask multiplications of training are not counted. ``macs`` is a dense count of this model
    on these inputs made elsewhere (verification counts while it runs both models), which
    saves a forward pass; sizes on disk are computed from shapes and nonzero counts, without
    serialising (:mod:`prunekit.measure.size`).
    """
    params_by_name = effective_parameters(model)
    with torch.no_grad():
        nonzero = {n: int(torch.count_nonzero(t)) for n, t in params_by_name.items()}
    params, nonzeros = sum(t.numel() for t in params_by_name.values()), sum(nonzero.values())
    if macs is None:
        macs = count_macs(model, example_inputs)
    state = effective_state_dict(model)
    return ModelStats(
        params=params,
        nonzeros=nonzeros,
        sparsity=sparsity_of(params, nonzeros),
        macs=macs.total,
        effective_macs=effective_macs(model, macs),
        dense_bytes=dense_size(state),
        sparse_bytes=sparse_size(state, _by_state_name(state, params_by_name, nonzero)),
        latency_ms=_deployed_latency(model, example_inputs) if latency else None,
        metric=_metrics(model, eval_fn) if eval_fn is not None else {},
    )


def _by_state_name(
    state: Mapping[str, torch.Tensor],
    params: Mapping[str, torch.Tensor],
    nonzero: Mapping[str, int],
) -> dict[str, int]:
    """The parameters' nonzero counts under their state-dict names (the same memory)."""
    by_memory = {_memory(t): nonzero[n] for n, t in params.items()}
    return {n: by_memory[_memory(t)] for n, t in state.items() if _memory(t) in by_memory}


def _memory(t: torch.Tensor) -> tuple[object, ...]:
    return (t.data_ptr(), t.shape, t.stride(), t.dtype)


def _row(name: str, kind: RowKind, before: float | None, after: float | None) -> Row:
    if before is None or after is None:
        return Row(name, kind, before, after, None, None)
    ratio = after / before if before != 0 and math.isfinite(before) else None
    return Row(name, kind, before, after, ratio, after - before)


def compare(before: ModelStats, after: ModelStats) -> list[Row]:
    """Rows for every quantity of two measurements, task metrics last (union of both names)."""
    rows = [
        _row("params", "count", before.params, after.params),
        _row("nonzeros", "count", before.nonzeros, after.nonzeros),
        _row("sparsity", "fraction", before.sparsity, after.sparsity),
        _row("MACs", "count", before.macs, after.macs),
        _row("effective MACs", "count", before.effective_macs, after.effective_macs),
        _row("size (dense)", "bytes", before.dense_bytes, after.dense_bytes),
        _row("size (sparse)", "bytes", before.sparse_bytes, after.sparse_bytes),
        _row("latency", "ms", before.latency_ms, after.latency_ms),
    ]
    names = list(dict.fromkeys([*before.metric, *after.metric]))
    rows += [_row(n, "metric", before.metric.get(n), after.metric.get(n)) for n in names]
    return rows
