import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.core import AxisView, Group, Member, SelectionConfig, select
from prunekit.core.selection import keep_pattern
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
    sel = select(scores, groups, SelectionConfig(sparsity=sparsity, min_keep=0))
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
