"""Allocation of per-layer sparsities from sensitivity curves: hand-worked cases and properties."""

from __future__ import annotations

import fnmatch
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit import (
    SelectionConfig,
    apply_masks,
    build_groups,
    get_estimator,
    get_granularity,
    select,
    selection_to_masks,
)
from prunekit.analysis import (
    SensitivityResult,
    allocate,
    allocation_overrides,
    group_size,
    sensitivity,
)
from prunekit.analysis.allocation import largest_within, loss_at
from prunekit.core.groups import Group, Member
from prunekit.core.views import AxisView
from prunekit.errors import ConfigError, SelectionError
from prunekit.graph import build_structural_groups
from prunekit.masks import clone_model

from .conftest import residual_net

SPARSITIES = (0.25, 0.5, 0.75)


def _groups(in_a: int = 4, in_b: int = 4, units: int = 10) -> list[Group]:
    model = nn.Sequential()
    model.add_module("a", nn.Linear(in_a, units))
    model.add_module("b", nn.Linear(in_b, units))
    return build_groups(model, get_granularity("channel"))


def _result(a: list[float], b: list[float], baseline: float = 0.9) -> SensitivityResult:
    """Curves of an accuracy-like metric given the metric *lost* at each of ``SPARSITIES``."""
    return SensitivityResult(
        baseline,
        {
            "a": tuple((s, baseline - d) for s, d in zip(SPARSITIES, a, strict=True)),
            "b": tuple((s, baseline - d) for s, d in zip(SPARSITIES, b, strict=True)),
        },
        higher_is_better=True,
    )


def test_hand_worked_allocation_prefers_the_insensitive_layer() -> None:
    result = _result(a=[0.0, 0.01, 0.02], b=[0.1, 0.3, 0.6])
    # Half of 20 units must go. 'a' reaches its last measured sparsity 0.75 at a tolerated loss of
    # 0.02; 'b' must give the remaining 2.5 units (0.25), which it does at a loss of 0.1.
    alloc = allocate(result, _groups(), 0.5)
    assert alloc == pytest.approx({"a": 0.75, "b": 0.25}, abs=1e-9)


def test_params_weighting_counts_weights_and_biases() -> None:
    groups = _groups(in_a=2, in_b=8)
    assert [group_size(g, "params") for g in groups] == [30.0, 90.0]
    assert [group_size(g, "units") for g in groups] == [10.0, 10.0]
    result = _result(a=[0.0, 0.0, 0.0], b=[0.1, 0.2, 0.3])
    # 60 of 120 params: 'a' gives 0.75 * 30 = 22.5, 'b' the other 37.5 of its 90.
    alloc = allocate(result, groups, 0.5, weight="params")
    assert alloc == pytest.approx({"a": 0.75, "b": 37.5 / 90}, abs=1e-9)
    assert allocate(result, groups, 0.5) == pytest.approx({"a": 0.75, "b": 0.25}, abs=1e-9)


def test_a_jump_is_blended_so_the_target_is_met_exactly() -> None:
    # 'a' loses nothing anywhere, so at tolerance 0 it jumps from 0 to 0.75 at once.
    result = _result(a=[0.0, 0.0, 0.0], b=[0.1, 0.3, 0.6])
    alloc = allocate(result, _groups(), 0.3)
    assert alloc == pytest.approx({"a": 0.6, "b": 0.0}, abs=1e-9)


def test_loss_metrics_read_the_other_way() -> None:
    result = SensitivityResult(
        1.0, {"a": ((0.5, 3.0),), "b": ((0.5, 1.0),)}, higher_is_better=False
    )
    assert allocate(result, _groups(), 0.25) == pytest.approx({"a": 0.0, "b": 0.5}, abs=1e-9)


def test_selection_with_the_overrides_meets_the_target_within_rounding() -> None:
    model = nn.Sequential()
    for name, units in [("a", 10), ("b", 10), ("c", 7)]:
        model.add_module(name, nn.Linear(4, units))
    groups = build_groups(model, get_granularity("channel"))
    result = SensitivityResult(
        0.9,
        {
            "a": ((0.3, 0.9), (0.6, 0.85), (0.9, 0.5)),
            "b": ((0.3, 0.8), (0.6, 0.6), (0.9, 0.1)),
            "c": ((0.3, 0.89), (0.6, 0.88), (0.9, 0.87)),
        },
        higher_is_better=True,
    )
    alloc = allocate(result, groups, 0.6)
    # c is capped at 0.9 (6.3 units); a tolerance of 0.12 gives a 0.66 and b 0.33: 16.2 units
    assert alloc == pytest.approx({"a": 0.66, "b": 0.33, "c": 0.9}, abs=1e-9)
    overrides = allocation_overrides(alloc, groups)
    assert overrides == alloc
    scores = {g.name: torch.arange(g.n_units, dtype=torch.float32) for g in groups}
    keep = select(scores, groups, SelectionConfig(overrides=overrides))
    removed = sum(int((~k).sum()) for k in keep.values())
    assert abs(removed - 0.6 * 27) <= 0.5 * len(groups)


def test_max_sparsity_caps_every_group() -> None:
    result = _result(a=[0.0, 0.0, 0.0], b=[0.0, 0.0, 0.5])
    alloc = allocate(result, _groups(), 0.5, max_sparsity=0.6)
    assert max(alloc.values()) <= 0.6 + 1e-12
    assert sum(alloc.values()) / 2 == pytest.approx(0.5)


def test_unreachable_and_invalid_targets_are_refused() -> None:
    result = _result(a=[0.0, 0.01, 0.02], b=[0.1, 0.3, 0.6])
    with pytest.raises(SelectionError, match="unreachable"):
        allocate(result, _groups(), 0.8)  # curves end at 0.75
    with pytest.raises(SelectionError, match=r"max_sparsity=0\.5"):
        allocate(result, _groups(), 0.6, max_sparsity=0.5)
    with pytest.raises(ConfigError, match="target_sparsity"):
        allocate(result, _groups(), 1.0)
    with pytest.raises(ConfigError, match="no sensitivity curve for group 'x'"):
        allocate(result, [Group("x", "x", _groups()[0].members)], 0.5)
    with pytest.raises(ConfigError, match="weight"):
        allocate(result, _groups(), 0.5, weight="flops")  # type: ignore[arg-type]
    assert allocate(result, _groups(), 0.0) == {"a": 0.0, "b": 0.0}


def test_largest_within_reads_the_piecewise_linear_curve() -> None:
    curve = [(0.0, 0.0), (0.5, 0.2), (0.7, 0.1), (0.9, 1.0), (0.95, math.nan)]
    assert largest_within(curve, 0.1) == pytest.approx(0.7)  # the dip at 0.7 counts
    assert largest_within(curve, 0.05) == pytest.approx(0.125)
    assert largest_within(curve, 0.55) == pytest.approx(0.8)
    assert largest_within(curve, 10.0) == pytest.approx(0.9)  # NaN is never allowed
    assert largest_within(curve, -1.0) == 0.0


def test_overrides_match_the_layer_exactly() -> None:
    member = Member("blocks[1].weight", AxisView((3, 2)))
    groups = [Group("g", "blocks[1]", (member,))]
    (pattern,) = allocation_overrides({"g": 0.5}, groups)
    assert fnmatch.fnmatchcase("blocks[1]", pattern)
    assert not fnmatch.fnmatchcase("blocks1", pattern)


losses = st.lists(
    st.floats(-0.05, 1.0, allow_nan=False), min_size=len(SPARSITIES), max_size=len(SPARSITIES)
)


@pytest.mark.filterwarnings("ignore:allocate. at target sparsity:UserWarning")
@settings(max_examples=60, deadline=None)
@given(a=losses, b=losses, fraction=st.floats(0.0, 1.0), cap=st.floats(0.3, 0.95))
def test_property_target_met_exactly_within_bounds(
    a: list[float], b: list[float], fraction: float, cap: float
) -> None:
    groups = _groups(in_a=3, in_b=5, units=8)
    result = _result(a, b)
    most = min(cap, SPARSITIES[-1])
    target = fraction * most * 0.999
    for weight in ("units", "params"):
        alloc = allocate(result, groups, target, weight=weight, max_sparsity=cap)  # type: ignore[arg-type]
        sizes = {g.name: group_size(g, weight) for g in groups}  # type: ignore[arg-type]
        achieved = sum(sizes[n] * s for n, s in alloc.items()) / sum(sizes.values())
        assert achieved == pytest.approx(target, abs=1e-9)
        assert all(0.0 <= s <= most + 1e-12 for s in alloc.values())


def test_on_digits_allocation_keeps_more_accuracy_than_uniform_sparsity(digits) -> None:
    def accuracy(model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(digits.x_test).argmax(-1) == digits.y_test).float().mean())

    groups = build_groups(digits.model, get_granularity("channel"))
    scores = get_estimator("taylor").score(digits.model, groups, digits.data)
    curves = sensitivity(
        digits.model, groups, scores, accuracy, higher_is_better=True, progress=False
    )
    alloc = allocate(curves, groups, 0.5)
    assert sum(alloc[g.name] * g.n_units for g in groups) / 138 == pytest.approx(0.5)
    assert alloc["4"] < 0.5  # the 10 output units are the most sensitive

    def pruned_accuracy(config: SelectionConfig) -> float:
        model = clone_model(digits.model)
        apply_masks(model, selection_to_masks(groups, select(scores, groups, config)))
        return accuracy(model)

    allocated = pruned_accuracy(SelectionConfig(overrides=allocation_overrides(alloc, groups)))
    uniform = pruned_accuracy(SelectionConfig(sparsity=0.5, scope="layer"))
    assert allocated > uniform + 0.05


def test_an_allocation_past_the_curves_collapse_is_warned_about_or_refused() -> None:
    """The residual net's stream (group ``a``) falls to chance (0.1 of a 0.9 accuracy) at its
    first measured sparsity; its hidden layer ``c`` loses 0, 0.2, 0.6 at 0.25, 0.5, 0.75."""
    groups = build_structural_groups(residual_net(), torch.zeros(1, 1))
    result = SensitivityResult(
        0.9,
        {"a": ((0.25, 0.1), (0.5, 0.1), (0.75, 0.1)), "c": ((0.25, 0.9), (0.5, 0.7), (0.75, 0.3))},
        higher_is_better=True,
    )
    # A quarter of the 4 units: at tolerance 0.16 'a' gets 0.25 * 0.16 / 0.8 = 0.05 and 'c'
    # 0.25 + 0.25 * 0.16 / 0.2 = 0.45; each loses 0.16, far from halving the accuracy.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert allocate(result, groups, 0.25) == pytest.approx({"a": 0.05, "c": 0.45}, abs=1e-9)
    # Half: 'c' reaches its last point 0.75 at tolerance 0.6 and 'a' must give the rest (0.25),
    # which its curve reaches only at the chance plateau (loss 0.8): both groups alone leave
    # less than half of the 0.9, and 'c' is at its cap. Said, not returned silently.
    with pytest.warns(UserWarning, match=r"group 'a' at sparsity 0\.250 loses 0\.8 .*2 of 2"):
        alloc = allocate(result, groups, 0.5)
    assert alloc == pytest.approx({"a": 0.25, "c": 0.75}, abs=1e-9)
    with pytest.raises(SelectionError, match=r"max_drop=0\.5: group 'a' at sparsity 0\.250"):
        allocate(result, groups, 0.5, max_drop=0.5)
    assert allocate(result, groups, 0.25, max_drop=0.2) == pytest.approx({"a": 0.05, "c": 0.45})


def test_loss_at_reads_the_piecewise_linear_curve() -> None:
    curve = [(0.0, 0.0), (0.5, 0.2), (0.7, 0.1), (0.9, 1.0)]
    assert loss_at(curve, 0.25) == pytest.approx(0.1)
    assert loss_at(curve, 0.7) == pytest.approx(0.1)
    assert loss_at(curve, 0.8) == pytest.approx(0.55)
    assert loss_at(curve, 0.95) == pytest.approx(1.0)
