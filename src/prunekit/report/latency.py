"""Dense and pruned latency measured in named runtimes, for a run's report.

:func:`runtime_latencies` times both models together in each runtime with
:class:`~prunekit.budget.latency.RuntimeTimer` (one thread, interleaved rounds, CPU-time
medians) and returns :class:`~prunekit.report.run.RuntimeLatency` records, which
:class:`~prunekit.report.run.RunReport` shows as rows named by runtime and batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from prunekit.budget.latency import RuntimeTimer
from prunekit.export.tensors import batch_size, with_batch
from prunekit.measure.inputs import ExampleInputs
from prunekit.measure.runtimes import check_runtime
from prunekit.report.run import RuntimeLatency


def runtime_latencies(
    dense: nn.Module,
    pruned: nn.Module,
    example_inputs: ExampleInputs,
    runtimes: Sequence[str] = ("onnxruntime",),
    *,
    batch: int | None = None,
    warmup: int = 3,
    repeats: int = 15,
) -> tuple[RuntimeLatency, ...]:
    """Median forward time (ms) of ``dense`` and ``pruned`` in each runtime, measured together
    (one thread, ``repeats`` interleaved rounds after ``warmup``, the calling thread's CPU time)
    on ``example_inputs`` resized to ``batch`` (``None``: as given)."""
    names = [check_runtime(r, "report latency runtime") for r in runtimes]
    inputs = example_inputs if batch is None else with_batch(example_inputs, batch)
    size = batch if batch is not None else batch_size(inputs)
    out = []
    for runtime in names:
        timer = RuntimeTimer(runtime, warmup=warmup, repeats=repeats)
        times = timer.time({"dense": dense, "pruned": pruned}, inputs)
        out.append(RuntimeLatency(runtime, times["dense"], times["pruned"], size, timer.clock))
    return tuple(out)
