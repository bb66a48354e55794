"""Timing modules in their serving runtime for latency budgets: :class:`RuntimeTimer`.

Modules run in PyTorch eager, or as their in-memory ONNX graph in onnxruntime or OpenVINO (CPU
plugin), through :func:`prunekit.measure.runtimes.runtime_call`, one thread by default, in
interleaved rounds (:func:`prunekit.measure.runtimes.interleaved_times`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

import numpy as np
from torch import nn

from prunekit.errors import ConfigError
from prunekit.measure.inputs import ExampleInputs
from prunekit.measure.runtimes import CLOCKS, check_runtime, interleaved_times, runtime_call

STATISTICS: tuple[str, ...] = ("median", "min")

__all__ = ["CLOCKS", "STATISTICS", "RuntimeTimer"]


class RuntimeTimer:
    """Times modules in a runtime (``"onnxruntime"``, ``"openvino"`` or ``"torch"``) with
    ``threads`` intra-op threads: :meth:`time` runs them in alternation (one call each per
    round, order rotated), so that load on a shared machine hits every model alike, and returns
    each one's ``statistic`` (median or minimum) in ms.

    ``clock="cpu"`` (the default with one thread) counts the CPU time of the calling thread,
    where all three runtimes compute with one thread; time spent waiting for a CPU is not
    counted. On an oversubscribed machine wall-clock times are decided by the scheduler
    (MobileNet v2 in onnxruntime, three copies in 15 interleaved rounds at a load average of 12
    on 2 cores: wall medians 41.8-46.5 ms, CPU medians 13.8-15.0 ms; a 2 ms model's wall
    medians ranged 1.9-10.3 ms). ``clock="wall"`` is the latency a user sees on a quiet
    machine, and the only clock for more than one thread."""

    def __init__(
        self,
        runtime: str = "onnxruntime",
        *,
        threads: int = 1,
        warmup: int = 3,
        repeats: int = 15,
        statistic: str = "median",
        clock: str | None = None,
    ) -> None:
        check_runtime(runtime, "latency runtime")
        for name, value, low in (("threads", threads, 1), ("warmup", warmup, 0),
                                 ("repeats", repeats, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"latency timer {name} must be an integer >= {low}, got {value!r}"
                )
        if statistic not in STATISTICS:
            raise ConfigError(
                f"latency statistic {statistic!r} is not one of {', '.join(STATISTICS)}"
            )
        clock = clock or ("cpu" if threads == 1 else "wall")
        if clock not in CLOCKS or (clock == "cpu" and threads != 1):
            raise ConfigError(
                f"latency clock {clock!r} must be 'wall', or 'cpu' with threads=1 (got {threads})"
            )
        self.runtime, self.threads, self.warmup, self.repeats = runtime, threads, warmup, repeats
        self.statistic, self.clock = statistic, clock

    def with_repeats(self, repeats: int) -> RuntimeTimer:
        """The same timer with ``repeats`` timed rounds."""
        return RuntimeTimer(self.runtime, threads=self.threads, warmup=self.warmup,
                            repeats=repeats, statistic=self.statistic,
                            clock=self.clock)  # fmt: skip

    def time(
        self, models: Mapping[str, nn.Module], example_inputs: ExampleInputs
    ) -> dict[str, float]:
        """The ``statistic`` of each module's forward time in ms on ``example_inputs``."""
        with ExitStack() as stack:
            calls = {
                name: stack.enter_context(
                    runtime_call(model, example_inputs, self.runtime, self.threads)
                )
                for name, model in models.items()
            }
            times = interleaved_times(calls, self.warmup, self.repeats, self.clock)
        reduce = np.min if self.statistic == "min" else np.median
        return {name: float(reduce(values)) * 1e3 for name, values in times.items()}
