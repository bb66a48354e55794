"""fastest_step prefers the finest step unless a larger one is faster beyond the noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pytest
import torch
from torch import nn

from prunekit.budget import fastest_step
from prunekit.errors import ConfigError
from prunekit.measure.inputs import ExampleInputs

Cost = Callable[[int], float]


class FixedCosts:
    """A timer whose answer for a Linear layer is ``costs[k](out_features)`` ms on the k-th
    time that width is timed (the k-th pass), the last cost for every later pass."""

    def __init__(self, costs: Sequence[Cost]) -> None:
        self.costs = costs
        self.calls: dict[int, int] = {}

    def time(
        self, models: Mapping[str, nn.Module], example_inputs: ExampleInputs
    ) -> dict[str, float]:
        times = {}
        for name, layer in models.items():
            assert isinstance(layer, nn.Linear)
            width = layer.out_features
            k = self.calls.get(width, 0)
            self.calls[width] = k + 1
            times[name] = self.costs[min(k, len(self.costs) - 1)](width)
        return times


def linear(w: int) -> float:
    return 0.01 * w


def _one_linear() -> tuple[nn.Module, torch.Tensor]:
    # window 32 above half of 64 output features: widths 32..64, 33 of them
    return nn.Sequential(nn.Linear(16, 64)).eval(), torch.randn(1, 16)


def test_a_larger_step_favoured_by_one_noisy_pass_is_not_chosen() -> None:
    """Pass 1: multiples of 16 happen to run 10% faster; pass 2: time is linear in width.
    Step 16 scores 1 against step 8's (2 * 1/1.1 + 3) / 5 = 0.964 in pass 1 (a 3.8% lead,
    under the 10% doubt), so the widths are timed again, where every step scores 1."""

    def noisy(w: int) -> float:
        return linear(w) * (1 / 1.1 if w % 16 == 0 else 1.0)

    model, x = _one_linear()
    timer = FixedCosts([noisy, linear])
    assert fastest_step(model, x, timer, passes=1) == 16  # one pass is fooled
    timer = FixedCosts([noisy, linear])
    assert fastest_step(model, x, timer) == 1
    assert set(timer.calls.values()) == {2} and len(timer.calls) == 33


def test_a_lead_in_every_pass_that_rests_on_few_widths_is_weighed_against_the_noise() -> None:
    """Multiples of 16 run 6% faster in both passes; the other widths alternate +-10% between
    the passes (odd ones fast in the first, slow in the second; even ones the other way). Step
    16 leads step 1 in both passes (by 4.8% and 6.1%), but its mean rests on 3 widths and the
    passes disagree by 0.2 at 30 of the 33: its average lead, 5%, is about one standard error
    (4.9%), so with ``z=2`` it is noise. Ignoring the noise (``z=0``), step 2 is the smallest
    step that no other beats in both passes."""

    def factor(w: int, run: int) -> float:
        if w % 16 == 0:
            return 1.06
        return 1.1 if (w % 2 == 1) == (run == 0) else 0.9

    def cost(run: int) -> Cost:
        return lambda w: linear(w) / factor(w, run)

    model, x = _one_linear()
    assert fastest_step(model, x, FixedCosts([cost(0), cost(1)]), passes=1) == 16
    assert fastest_step(model, x, FixedCosts([cost(0), cost(1)]), z=0.0) == 2
    assert fastest_step(model, x, FixedCosts([cost(0), cost(1)])) == 1


def test_a_padding_effect_that_every_pass_sees_wins() -> None:
    """Time grows with the width padded to 8 in both passes: steps 8, 16 and 32 score 1, step
    4 scores (5 + 36/40 + 44/48 + 52/56 + 60/64) / 9 = 0.965 (the lead 3.7% is in doubt, so a
    second pass confirms it), and 8 is the smallest of the unbeaten."""

    def padded(w: int) -> float:
        return linear(8 * math.ceil(w / 8))

    model, x = _one_linear()
    timer = FixedCosts([padded])
    assert fastest_step(model, x, timer) == 8
    assert set(timer.calls.values()) == {2}


def test_a_lead_beyond_the_doubt_is_decided_in_one_pass() -> None:
    """Widths off multiples of 8 run at half the rate: step 8 leads step 4 by
    9 / (5 + 4 * 0.5) - 1 = 29% in the first pass, so the layers are not timed again."""

    def slow_off_eight(w: int) -> float:
        return linear(w) * (1.0 if w % 8 == 0 else 2.0)

    model, x = _one_linear()
    timer = FixedCosts([slow_off_eight, linear])
    assert fastest_step(model, x, timer) == 8
    assert set(timer.calls.values()) == {1}


def test_the_smallest_step_is_decided_in_one_pass_and_passes_are_checked() -> None:
    model, x = _one_linear()
    timer = FixedCosts([linear])
    assert fastest_step(model, x, timer) == 1
    assert set(timer.calls.values()) == {1}
    with pytest.raises(ConfigError, match="passes must be an integer >= 1, got 0"):
        fastest_step(model, x, timer, passes=0)
