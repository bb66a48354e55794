import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.core import AxisView, ElementView, Group, Member, SelectionConfig, select
from prunekit.core.selection import group_floor, keep_pattern, max_global_removal
from prunekit.errors import ConfigError, ScoreError, SelectionError


def group(name: str, n: int, pattern: tuple[int, int] | None = None) -> Group:
    return Group(name, name, (Member(f"{name}.weight", AxisView((n, 3), 0)),), pattern)


def keep(sel: dict[str, torch.Tensor], name: str) -> list[bool]:
    return sel[name].tolist()


def test_global_selection_removes_lowest_units_across_groups() -> None:
    groups = [group("a", 2), group("b", 3)]
    scores = {"a": torch.tensor([0.1, 0.9]), "b": torch.tensor([0.2, 0.3, 0.8])}
    sel = select(scores, groups, SelectionConfig(sparsity=0.4))
    assert keep(sel, "a") == [False, True]
    assert keep(sel, "b") == [False, True, True]


def test_min_keep_protects_a_layer_in_global_selection() -> None:
    groups = [group("a", 2), group("b", 2)]
    scores = {"a": torch.tensor([0.1, 0.2]), "b": torch.tensor([5.0, 6.0])}
    sel = select(scores, groups, SelectionConfig(sparsity=0.5, min_keep=1))
    assert keep(sel, "a") == [False, True]
    assert keep(sel, "b") == [False, True]


def test_layer_scope_overrides_threshold_and_round_to() -> None:
    groups = [group("a", 4), group("b", 10)]
    scores = {"a": torch.tensor([4.0, 1.0, 3.0, 2.0]), "b": torch.arange(10.0)}
    sel = select(scores, groups, SelectionConfig(sparsity=0.5, scope="layer"))
    assert keep(sel, "a") == [True, False, True, False]
    assert int(sel["b"].sum()) == 5
    sel = select(scores, groups, SelectionConfig(sparsity=0.5, scope="layer", overrides={"b": 0.8}))
    assert keep(sel, "b") == [False] * 8 + [True] * 2
    sel = select(scores, groups, SelectionConfig(threshold=2.5))
    assert keep(sel, "a") == [True, False, True, False]
    assert int(sel["b"].sum()) == 7
    sel = select(scores, groups, SelectionConfig(sparsity=0.55, scope="layer", round_to=8))
    assert keep(sel, "b") == [False, False] + [True] * 8


def test_n_m_pattern_keeps_n_of_every_m() -> None:
    scores = torch.tensor([1.0, 4.0, 3.0, 2.0, 8.0, 7.0, 6.0, 5.0])
    assert keep_pattern(scores, 2, 4).tolist() == [
        False,
        True,
        True,
        False,
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_are_refused_naming_the_group(bad: float) -> None:
    with pytest.raises(ScoreError, match="'b'.*unit 1"):
        select(
            {"a": torch.ones(2), "b": torch.tensor([1.0, bad, 2.0])},
            [group("a", 2), group("b", 3)],
            SelectionConfig(sparsity=0.5),
        )


def test_wrong_score_shape_and_missing_scores_are_refused() -> None:
    with pytest.raises(ScoreError, match="shape"):
        select({"a": torch.ones(3)}, [group("a", 2)], SelectionConfig(sparsity=0.5))
    with pytest.raises(ScoreError, match="no scores"):
        select({}, [group("a", 2)], SelectionConfig(sparsity=0.5))


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "half"])
def test_sparsity_outside_unit_interval_is_refused(sparsity: object) -> None:
    with pytest.raises(ConfigError, match="sparsity"):
        SelectionConfig(sparsity=sparsity)  # type: ignore[arg-type]


def test_unreachable_sparsity_under_min_keep_is_an_error() -> None:
    with pytest.raises(SelectionError, match="min_keep"):
        select({"a": torch.ones(2)}, [group("a", 2)], SelectionConfig(sparsity=0.9, min_keep=2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=5), st.floats(0, 0.99), st.integers(0, 99))
def test_global_selection_removes_exactly_round_sparsity_times_units(
    sizes: list[int], sparsity: float, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    groups = [group(f"g{i}", n) for i, n in enumerate(sizes)]
    scores = {g.name: torch.rand(g.n_units, generator=gen) for g in groups}
    config = SelectionConfig(sparsity=sparsity, min_keep=0, min_keep_fraction=0.0)
    sel = select(scores, groups, config)
    removed = sum(int((~k).sum()) for k in sel.values())
    assert removed == round(sparsity * sum(sizes))
    # every removed unit scores no higher than every kept unit
    flat_s = torch.cat([scores[g.name] for g in groups])
    flat_k = torch.cat([sel[g.name] for g in groups])
    if removed and removed < flat_s.numel():
        assert flat_s[~flat_k].max() <= flat_s[flat_k].min()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.data())
def test_n_m_selection_keeps_exactly_n_per_block(chunks: int, m: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, m - 1)) if m > 1 else 0
    if n == 0:
        return
    scores = torch.randn(chunks * m)
    kept = keep_pattern(scores, n, m).reshape(chunks, m).sum(1)
    assert kept.tolist() == [n] * chunks


def test_fractional_floor_stops_a_small_scored_layer_collapsing() -> None:
    # "a" scores far below "b": a global ranking on raw scores takes all it may from "a"
    groups = [group("a", 20), group("b", 20)]
    scores = {"a": torch.arange(20.0) / 100, "b": 10 + torch.arange(20.0)}
    no_floor = select(scores, groups, SelectionConfig(sparsity=0.5, min_keep_fraction=0.0))
    assert int(no_floor["a"].sum()) == 1  # only min_keep=1 left
    default = select(scores, groups, SelectionConfig(sparsity=0.5))
    assert keep(default, "a") == [False] * 18 + [True] * 2  # ceil(0.1 * 20) = 2
    assert keep(default, "b") == [False] * 2 + [True] * 18  # the other 2 of 20 removed
    quarter = select(scores, groups, SelectionConfig(sparsity=0.5, min_keep_fraction=0.25))
    assert int(quarter["a"].sum()) == 5 and int(quarter["b"].sum()) == 15


def test_floor_is_the_larger_of_min_keep_and_the_fraction_within_the_group() -> None:
    assert group_floor(group("g", 20), SelectionConfig(min_keep=3)) == 3  # 3 > ceil(2.0)
    assert group_floor(group("g", 20), SelectionConfig(min_keep=1)) == 2
    assert group_floor(group("g", 30), SelectionConfig()) == 3  # 0.1 * 30 is 3.0000000000000004
    assert group_floor(group("g", 31), SelectionConfig()) == 4
    assert group_floor(group("g", 2), SelectionConfig(min_keep=5)) == 2  # bounded by the size
    assert group_floor(group("g", 20), SelectionConfig(min_keep=0, min_keep_fraction=0.0)) == 0


def test_floor_applies_in_layer_scope_threshold_and_overrides() -> None:
    groups = [group("a", 20)]
    scores = {"a": torch.arange(20.0)}
    for config in (
        SelectionConfig(sparsity=0.95, scope="layer", min_keep_fraction=0.2),
        SelectionConfig(threshold=100.0, min_keep_fraction=0.2),
        SelectionConfig(sparsity=0.0, overrides={"a": 0.99}, min_keep_fraction=0.2),
    ):
        assert keep(select(scores, groups, config), "a") == [False] * 16 + [True] * 4


def test_fine_grained_and_one_unit_groups_keep_only_min_keep() -> None:
    # element units: a layer with few weights left keeps its width, so only min_keep applies
    weights = Group("w", "w", (Member("w.weight", ElementView((4, 5))),))
    sel = select({"w": torch.arange(20.0)}, [weights], SelectionConfig(sparsity=0.95))
    assert int(sel["w"].sum()) == 1
    # a one-unit group (a whole block) is all or nothing: with min_keep=0 it may go
    block = group("block", 1)
    assert group_floor(block, SelectionConfig(min_keep=0)) == 0
    assert group_floor(block, SelectionConfig()) == 1


def test_global_sparsity_beyond_the_floors_is_an_error_naming_them() -> None:
    groups = [group("a", 10), group("b", 10)]
    scores = {"a": torch.rand(10), "b": torch.rand(10)}
    assert max_global_removal(groups, SelectionConfig(min_keep_fraction=0.3)) == 14
    select(scores, groups, SelectionConfig(sparsity=0.7, min_keep_fraction=0.3))
    with pytest.raises(SelectionError, match=r"min_keep_fraction=0.3\) allow only 14"):
        select(scores, groups, SelectionConfig(sparsity=0.75, min_keep_fraction=0.3))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_min_keep_fraction_outside_unit_interval_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="min_keep_fraction must be a number in"):
        SelectionConfig(sparsity=0.5, min_keep_fraction=bad)  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
    st.floats(0, 0.99),
    st.floats(0, 0.9),
    st.integers(0, 4),
    st.sampled_from(["global", "layer"]),
    st.integers(0, 99),
)
def test_no_group_is_cut_below_its_floor(
    sizes: list[int], sparsity: float, fraction: float, min_keep: int, scope: str, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    groups = [group(f"g{i}", n) for i, n in enumerate(sizes)]
    scores = {g.name: torch.rand(g.n_units, generator=gen) for g in groups}
    config = SelectionConfig(
        sparsity=sparsity,
        scope=scope,  # type: ignore[arg-type]
        min_keep=min_keep,
        min_keep_fraction=fraction,
    )
    n_remove = round(sparsity * sum(sizes))
    if scope == "global" and n_remove > max_global_removal(groups, config):
        with pytest.raises(SelectionError):
            select(scores, groups, config)
        return
    sel = select(scores, groups, config)
    for g in groups:
        by_fraction = math.ceil(fraction * g.n_units - 1e-9) if g.n_units > 1 else 0
        floor = min(g.n_units, max(min_keep, by_fraction))
        assert int(sel[g.name].sum()) >= floor
    if scope == "global":  # the floors never change how many units go, only which
        assert sum(int((~k).sum()) for k in sel.values()) == n_remove
