"""Latency budgets: targets naming a runtime, per-layer tables, the table's prediction worked by
hand, the goal correction, real timers, and a latency target met on a real model."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
from torch import nn

from prunekit.budget import LATENCY_RUNTIMES, Target, parse_target, select_to_target
from prunekit.budget.latency import (
    STEPS,
    LatencyModel,
    LatencyTable,
    LayerTimes,
    RuntimeTimer,
    fastest_step,
    layer_shapes,
)
from prunekit.budget.latency_table import _widths
from prunekit.budget.search import _next_goal
from prunekit.core import SelectionConfig
from prunekit.errors import ConfigError
from prunekit.estimators import get_estimator
from prunekit.graph import build_structural_groups
from prunekit.surgery.apply import apply_surgery

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"latency": 0.5}, Target("latency", 0.5, "onnxruntime")),
        ({"latency": 0.5, "runtime": "torch"}, Target("latency", 0.5, "torch")),
        ("latency=0.4,runtime=torch", Target("latency", 0.4, "torch")),
        ("Latency:0.4", Target("latency", 0.4, "onnxruntime")),
    ],
)
def test_latency_targets_name_a_runtime(value: object, expected: Target) -> None:
    target = parse_target(value)  # type: ignore[arg-type]
    assert target == expected
    assert parse_target(str(target)) == target == parse_target(target.as_dict())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"latency": 0.5, "runtime": "onnxrt"}, "did you mean 'onnxruntime'"),
        ({"macs": 0.5, "runtime": "torch"}, "target macs= takes no runtime"),
        ("latency=0.5,macs=0.5", "names 2 metrics"),
        ({"latency": 0.5, "runtime": 3}, "runtime must be a name"),
    ],
)
def test_bad_latency_targets_are_config_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_target(value)  # type: ignore[arg-type]


def test_widths_are_multiples_of_the_step_up_to_the_full_width() -> None:
    assert _widths(64, 4, 8) == [16, 32, 48, 64]
    assert _widths(10, 4, 8) == [8, 10]  # 2.5, 5, 7.5 round up to 8; the full width stays
    assert _widths(6, 3, 1) == [2, 4, 6]


def test_layer_times_are_separable_and_interpolated() -> None:
    times = LayerTimes(2.0, (8, 16), (1.0, 2.0), (4, 8), (1.5, 2.0))
    assert times.at(8, 16) == 2.0
    # out 12 -> 1.5 ms, in 6 -> 1.75 ms, together 1.5 * 1.75 / 2
    assert times.at(6, 12) == pytest.approx(1.3125)
    depthwise = LayerTimes(2.0, (8, 16), (1.0, 2.0), (), ())
    assert depthwise.at(0, 12) == 1.5


def _two_convs() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    return model.eval(), torch.randn(1, 3, 6, 6)


def test_latency_model_predicts_a_selection_by_hand() -> None:
    model, x = _two_convs()
    shapes = layer_shapes(model, x)
    assert list(shapes) == ["0.weight", "2.weight"]
    assert shapes["0.weight"].input_shape == (1, 3, 6, 6)
    assert (shapes["2.weight"].c_in, shapes["2.weight"].c_out) == (8, 4)
    groups = build_structural_groups(model, x)
    assert [g.n_units for g in groups] == [8]  # conv 0's outputs = conv 2's inputs
    table = LatencyTable(
        "torch",
        model_ms=10.0,
        layers={
            "0.weight": LayerTimes(4.0, (4, 8), (2.0, 4.0), (3,), (4.0,)),
            "2.weight": LayerTimes(3.0, (4,), (3.0,), (4, 8), (1.0, 3.0)),
        },
    )
    assert table.rest_ms == 3.0
    costs = LatencyModel(table, groups, model)
    half = {groups[0].name: torch.tensor([True, False] * 4)}
    assert costs.widths(half).tolist() == [[3.0, 4.0], [4.0, 4.0]]
    # rest 3 + conv 0 at 4 outputs (2 ms) + conv 2 at 4 inputs (1 ms)
    assert costs.cost(half) == pytest.approx(6.0)
    assert costs.ratio(half) == pytest.approx(0.6)
    full = {groups[0].name: torch.ones(8, dtype=torch.bool)}
    assert costs.ratio(full) == pytest.approx(1.0)


def test_next_goal_interpolates_between_tries_or_scales_the_last() -> None:
    assert _next_goal([(0.5, 0.6)], 0.5) == pytest.approx(0.5 * 0.5 / 0.6)
    # tries measured 0.6 and 0.45 around 0.5: a third of the way from 0.4 to 0.5
    assert _next_goal([(0.5, 0.6), (0.4, 0.45)], 0.5) == pytest.approx(0.4 + 0.1 / 3)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_runtime_timer_times_real_models_and_restores_threads(runtime: str) -> None:
    if runtime == "onnxruntime" and not HAS_ORT:
        pytest.skip("onnxruntime is not installed")
    model, x = _two_convs()
    before = torch.get_num_threads()
    times = RuntimeTimer(runtime, warmup=1, repeats=3).time({"a": model, "b": model[:1]}, x)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    assert torch.get_num_threads() == before


def test_timer_and_step_arguments_are_checked() -> None:
    model, x = _two_convs()
    with pytest.raises(ConfigError, match="'onnxrt' is not one of .*did you mean 'onnxruntime'"):
        RuntimeTimer("onnxrt")
    with pytest.raises(ConfigError, match="repeats must be an integer >= 1, got 0"):
        RuntimeTimer("torch", repeats=0)
    with pytest.raises(ConfigError, match="statistic 'mean' is not one of median, min"):
        RuntimeTimer("torch", statistic="mean")
    with pytest.raises(ConfigError, match="clock 'cpu' must be 'wall', or 'cpu' with threads=1"):
        RuntimeTimer("torch", threads=2, clock="cpu")
    assert RuntimeTimer("torch", threads=2).clock == "wall" and RuntimeTimer("torch").clock == "cpu"
    with pytest.raises(ConfigError, match="window 8 must span the largest step 32"):
        fastest_step(model, x, RuntimeTimer("torch"), window=8)


def test_fastest_step_is_one_of_the_steps_on_a_real_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1)).eval()
    timer = RuntimeTimer("torch", warmup=1, repeats=3)
    step = fastest_step(model, torch.randn(1, 3, 8, 8), timer, steps=(1, 4), window=8)
    assert step in (1, 4) and set(STEPS) >= {1, 4}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_latency_target_is_met_in_the_runtime_on_a_real_model(runtime: str) -> None:
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    if runtime not in LATENCY_RUNTIMES:
        pytest.skip(f"latency targets do not take {runtime}")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 32, 3, padding=1),
    ).eval()  # fmt: skip
    x = torch.randn(1, 3, 32, 32)
    groups = build_structural_groups(model, x)
    scores = get_estimator("magnitude").score(model, groups, None)
    timer = RuntimeTimer(runtime, repeats=21)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = select_to_target(
            model, x, groups, scores, SelectionConfig(round_to=8), Target("latency", 0.5, runtime),
            timer=timer,
        )  # fmt: skip
    assert all(int(k.sum()) % 8 == 0 for k in selection.values())
    pruned, _ = apply_surgery(model, groups, selection)
    times = RuntimeTimer(runtime, repeats=41).time({"d": model, "p": pruned}, x)
    assert 0.35 < times["p"] / times["d"] < 0.65  # 0.5 within timing noise on a shared CPU
