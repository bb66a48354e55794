"""Latency measured in named runtimes in a run's report: rows named by runtime and batch,
placed where the generic latency row stands, rendered in HTML, and measured on real models."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.measure.summary import ModelStats, compare
from prunekit.report.html import render_html
from prunekit.report.latency import runtime_latencies
from prunekit.report.run import RunReport, RuntimeLatency

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _stats(params: int, latency_ms: float | None) -> ModelStats:
    return ModelStats(params, params, 0.0, 10 * params, 10 * params, 4 * params, 4 * params,
                      latency_ms=latency_ms)  # fmt: skip


def test_a_runtime_latency_row_names_runtime_batch_and_clock() -> None:
    row = RuntimeLatency("onnxruntime", 4.0, 2.5).row()
    assert row.name == "latency onnxruntime b1 (CPU time)"
    assert (row.kind, row.before, row.after) == ("ms", 4.0, 2.5)
    assert row.ratio == pytest.approx(0.625) and row.change == pytest.approx(-1.5)
    assert RuntimeLatency("openvino", 8.0, 4.0, batch=32, clock="wall").name == (
        "latency openvino b32"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "onnx"}, "report latency runtime 'onnx' is not one of .*'onnxruntime'"),
        ({"batch": 0}, "batch must be an integer >= 1, got 0"),
        ({"clock": "gpu"}, "clock 'gpu' is not one of cpu, wall"),
        ({"after_ms": 0.0}, "times must be > 0 ms, got 4.0 and 0.0"),
    ],
)
def test_bad_runtime_latencies_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"runtime": "torch", "before_ms": 4.0, "after_ms": 2.0}
    with pytest.raises(ConfigError, match=message):
        RuntimeLatency(**{**values, **kwargs})  # type: ignore[arg-type]


def test_runtime_rows_replace_an_unmeasured_latency_row_in_place() -> None:
    ort = RuntimeLatency("onnxruntime", 4.0, 2.0)
    ov = RuntimeLatency("openvino", 3.0, 1.5)
    unmeasured = RunReport("t", "c", metrics=tuple(compare(_stats(100, None), _stats(50, None))),
                           latencies=(ort, ov))  # fmt: skip
    names = [r.name for r in unmeasured.metric_rows()]
    assert names[-3:] == ["size (sparse)", ort.name, ov.name]  # "latency" was last, now gone
    measured = RunReport("t", "c", metrics=tuple(compare(_stats(100, 2.0), _stats(50, 1.0))),
                         latencies=(ort,))  # fmt: skip
    assert [r.name for r in measured.metric_rows()][-2:] == ["latency", ort.name]
    alone = RunReport("t", "c", latencies=(ov,)).metric_rows()
    assert [(r.name, r.ratio) for r in alone] == [(ov.name, 0.5)]


def test_runtime_latency_is_shown_in_the_html_report() -> None:
    report = RunReport("t", "c", latencies=(RuntimeLatency("openvino", 4.0, 2.5),))
    page = render_html(report)
    assert "Before and after" in page
    row = page[page.index("latency openvino b1 (CPU time)") :].split("</tr>")[0]
    assert [c.split(">")[-1] for c in row.split("</td>")[1:4]] == ["4.000 ms", "2.500 ms", "×0.62"]


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_runtime_latencies_time_both_models_at_the_batch(runtime: str) -> None:
    if runtime == "openvino" and not HAS_OPENVINO:
        pytest.skip("openvino is not installed")
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3))
    pruned = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 32, 3))
    (latency,) = runtime_latencies(dense, pruned, torch.randn(1, 3, 16, 16), [runtime],
                                   batch=2, warmup=1, repeats=3)  # fmt: skip
    assert (latency.runtime, latency.batch, latency.clock) == (runtime, 2, "cpu")
    assert latency.before_ms > 0 and latency.after_ms > 0
