import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.errors import ConfigError
from prunekit.schedules import SCHEDULES, Constant, Iterative, OneShot, Polynomial, get_schedule

sparsity = st.floats(0.0, 0.99)


@st.composite
def schedules(draw: st.DrawFn) -> OneShot | Iterative | Polynomial | Constant:
    kind = draw(st.sampled_from(["one-shot", "iterative", "polynomial", "constant"]))
    final = draw(sparsity)
    if kind == "one-shot":
        return OneShot(final, draw(st.integers(0, 50)))
    if kind == "iterative":
        return Iterative(
            final,
            draw(st.integers(1, 8)),
            draw(st.integers(1, 20)),
            draw(st.integers(0, 20)),
            draw(st.sampled_from(["geometric", "linear"])),
        )
    if kind == "constant":
        return Constant(final)
    begin = draw(st.integers(0, 30))
    initial = draw(st.floats(0.0, final))
    return Polynomial(
        final,
        begin,
        begin + draw(st.integers(1, 200)),
        draw(st.integers(1, 25)),
        initial,
        draw(st.floats(0.5, 5.0)),
    )


@settings(max_examples=150, deadline=None)
@given(schedules())
def test_pure_monotone_and_hits_endpoints(schedule) -> None:
    values = [schedule(t) for t in range(schedule.end_step + 30)]
    assert values == [schedule(t) for t in range(schedule.end_step + 30)]  # pure
    assert all(a <= b for a, b in itertools.pairwise(values))  # monotone
    assert all(0.0 <= v < 1.0 for v in values)
    assert schedule(schedule.end_step) == schedule.final_sparsity  # exact endpoint
    assert schedule(schedule.end_step + 10**6) == schedule.final_sparsity
    if schedule.end_step > 0:
        assert schedule(schedule.end_step - 1) <= schedule.final_sparsity


def test_polynomial_hand_worked() -> None:
    # Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
    s = Polynomial(0.9, begin_step=0, end=10, frequency=1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert s(10) == 0.9
    # frequency 4 holds the value of the last update step (t=4 for t in 4..7)
    held = Polynomial(0.9, begin_step=0, end=10, frequency=4)
    assert held(7) == held(4) == pytest.approx(0.9 - 0.9 * 0.6**3)


def test_iterative_levels() -> None:
    assert Iterative(0.75, rounds=2).levels() == pytest.approx([0.5, 0.75])
    assert Iterative(0.9, rounds=3, spacing="linear").levels() == pytest.approx([0.3, 0.6, 0.9])
    s = Iterative(0.75, rounds=2, steps_per_round=10, begin_step=5)
    assert [s(4), s(5), s(14), s(15)] == pytest.approx([0.0, 0.5, 0.5, 0.75])


def test_registry_and_validation() -> None:
    assert set(SCHEDULES.names()) == {"constant", "iterative", "one-shot", "polynomial"}
    assert get_schedule("gradual", final_sparsity=0.5, end=10)(10) == 0.5
    with pytest.raises(ConfigError):
        Polynomial(1.0)
    with pytest.raises(ConfigError):
        Polynomial(0.5, begin_step=10, end=10)
    with pytest.raises(ConfigError):
        Iterative(0.5, rounds=0)
