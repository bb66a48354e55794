"""Runtimes for latency budgets: one name list, missing runtimes naming their extra, and
OpenVINO as a timer, a per-layer table and a latency target on a small conv net."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.budget.latency import RuntimeTimer, fastest_step, measure_latency_table
from prunekit.errors import ConfigError
from prunekit.export.report import ExportError
from prunekit.export.runtimes import require as export_require
from prunekit.measure.runtimes import (
    RUNTIMES,
    MissingRuntimeError,
    check_runtime,
    interleaved_times,
    require,
    runtime_call,
)

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
INSTALLED = {"torch": True, "onnxruntime": HAS_ORT, "openvino": HAS_OPENVINO}


def _two_convs() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1))
    return model.eval(), torch.randn(1, 3, 8, 8)


def test_one_runtime_list_with_onnxruntime_the_default() -> None:
    assert RUNTIMES == ("onnxruntime", "openvino", "torch")
    assert check_runtime("openvino") == "openvino"
    with pytest.raises(ConfigError, match="runtime 'openvin' is not one of .*'openvino'"):
        check_runtime("openvin")
    with pytest.raises(ConfigError, match="latency runtime 'ov' is not one of"):
        RuntimeTimer("ov")


@pytest.mark.parametrize(("module", "extra"), [("openvino", "openvino"), ("onnxruntime", "onnx")])
def test_a_missing_runtime_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    message = rf"timing needs '{module}', which is not installed: pip install prunekit\[{extra}\]"
    with pytest.raises(MissingRuntimeError, match=message) as info:
        require(module, "timing")
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ExportError, match=rf"pip install prunekit\[{extra}\]") as exported:
        export_require(module, "timing")
    assert isinstance(exported.value, ConfigError)  # both kinds, for either caller


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_call_computes_the_models_outputs(runtime: str) -> None:
    if not INSTALLED[runtime]:
        pytest.skip(f"{runtime} is not installed")
    model, x = _two_convs()
    before = torch.get_num_threads()
    model.train()
    with runtime_call(model, x, runtime, threads=1) as call:
        assert torch.get_num_threads() == 1 and not model.training
        out = call()
    got = out if isinstance(out, torch.Tensor) else out[0]  # a list or OpenVINO's results
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(got), model.eval()(x).numpy(), atol=1e-5)
    assert torch.get_num_threads() == before


def test_interleaved_times_rotate_the_order_and_count_rounds() -> None:
    calls: list[str] = []
    times = interleaved_times(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 3, clock="cpu"
    )
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(t) for t in times.values()] == [3, 3] and all(
        (t >= 0).all() for t in times.values()
    )
    with pytest.raises(ConfigError, match="latency clock 'gpu' is not one of cpu, wall"):
        interleaved_times({}, 0, 1, clock="gpu")


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")
def test_openvino_times_models_and_tabulates_layers() -> None:
    model, x = _two_convs()
    timer = RuntimeTimer("openvino", warmup=1, repeats=3)
    times = timer.time({"both": model, "first": model[:1]}, x)
    assert set(times) == {"both", "first"} and all(t > 0 for t in times.values())
    table = measure_latency_table(model, x, timer, points=2, step=8)
    assert table.runtime == "openvino" and list(table.layers) == ["0.weight", "2.weight"]
    first = table.layers["0.weight"]
    # 16 outputs at 2 points of step 8: 8 and 16; its 3 inputs round up to 8, capped at 3
    assert first.out_widths == (8, 16) and first.in_widths == (3,)
    assert table.layers["2.weight"].in_widths == (8, 16)
    step = fastest_step(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1)).eval(),
                        torch.randn(1, 3, 8, 8), timer, steps=(1, 4), window=8)  # fmt: skip
    assert step in (1, 4)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed")
def test_multihead_attention_runs_in_onnxruntime_without_its_fused_path() -> None:
    torch.manual_seed(0)
    model, x = _Attention().eval(), torch.randn(1, 5, 16)
    with runtime_call(model, x, "onnxruntime") as call:
        out = call()
    with torch.no_grad():
        np.testing.assert_allclose(out[0], model(x).numpy(), atol=1e-5)  # type: ignore[index]
    assert torch.backends.mha.get_fastpath_enabled()  # restored
