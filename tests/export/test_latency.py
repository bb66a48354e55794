"""Runtime latency: torch, onnxruntime and OpenVINO with pinned threads; interleaved timing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.export import export_model, interleaved_latency, runtime_latency, runtime_runner
from prunekit.models import build_model

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


def test_interleaved_latency_counts_and_orders() -> None:
    calls: list[str] = []
    result = interleaved_latency(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=3
    )
    # warm-up a b, then rounds rotate who goes first: a b, b a, a b
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert result["a"].repeats == 3 and result["b"].repeats == 3
    assert 0 <= result["a"].p10_ms <= result["a"].median_ms <= result["a"].p90_ms


def test_torch_latency_pins_threads_and_restores_them() -> None:
    model = build_model("lenet-5").train()
    before = torch.get_num_threads()
    seen: list[int] = []
    with runtime_runner(model, model.example_input(), "torch", threads=1) as call:
        seen.append(torch.get_num_threads())
        call()
        assert not model.training  # eval mode while timing
    assert seen == [1] and torch.get_num_threads() == before
    assert all(m.training for m in model.modules())
    latency = runtime_latency(model, model.example_input(), "torch", batch=4, repeats=3)
    assert latency.repeats == 3 and latency.median_ms > 0


@pytest.mark.skipif(not HAS_ONNX, reason="onnx runtimes are not installed")
def test_onnxruntime_latency_of_a_file_at_another_batch(tmp_path: Path) -> None:
    model = build_model("lenet-5").eval()
    path = export_model(model, model.example_input(), tmp_path / "m.onnx").path
    latency = runtime_latency(path, model.example_input(), "onnxruntime", batch=3, repeats=5)
    assert latency.repeats == 5 and latency.median_ms > 0


def test_bad_runtime_and_counts_are_config_errors() -> None:
    model = build_model("lenet-5")
    with pytest.raises(ConfigError, match="'onnxrt' is not one of .*did you mean 'onnxruntime'"):
        runtime_latency(model, model.example_input(), "onnxrt")
    with pytest.raises(ConfigError, match="threads must be an integer >= 1, got 0"):
        runtime_latency(model, model.example_input(), "torch", threads=0)
    with pytest.raises(ConfigError, match="repeats must be an integer >= 1, got 0"):
        runtime_latency(model, model.example_input(), "torch", repeats=0)
