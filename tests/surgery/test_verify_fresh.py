"""Verification beyond the example inputs: fresh draws of the inputs at another scale, each
output judged against its own scale, and models whose control flow depends on input values."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from prunekit.graph import build_structural_groups
from prunekit.surgery import VerificationError, apply_surgery, verify
from prunekit.surgery.compare import OpRecorder, compare_outputs, fresh_inputs


def _mlp() -> nn.Sequential:
    """Linear(3, 4) -> ReLU -> Linear(4, 2); hidden unit k has weight row [k + 1, 1, 1]."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1, 1], [2, 1, 1], [3, 1, 1], [4, 1, 1]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 2, 3, 4], [1, 1, 1, 1]]))
        net[2].bias.zero_()
    return net.eval()


X = torch.tensor([[1.0, 0.0, 0.0]])  # input features 1 and 2 are 0: their weights are unseen
KEEP_LAST_TWO = {"0": torch.tensor([False, False, True, True])}


def test_fresh_inputs_keep_structure_and_draw_in_range() -> None:
    ids = torch.tensor([[3, 7, 5, 4]])
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "scale": torch.ones(2, 2),
        "flags": torch.tensor([True, False]),
        "x": torch.tensor([[0.0, 1.0], [2.0, 3.0]]),
        "note": "kept",
    }
    state = torch.random.get_rng_state()
    fresh = fresh_inputs(inputs, seed=0, scale=3.0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    assert fresh["input_ids"].dtype == torch.int64 and fresh["input_ids"].shape == (1, 4)
    assert int(fresh["input_ids"].min()) >= 3 and int(fresh["input_ids"].max()) <= 7
    assert torch.equal(fresh["attention_mask"], torch.ones(1, 4, dtype=torch.long))
    assert torch.equal(fresh["scale"], torch.ones(2, 2))  # a constant float tensor stays
    assert torch.equal(fresh["flags"], inputs["flags"]) and fresh["note"] == "kept"
    assert fresh["x"].shape == (2, 2) and not torch.equal(fresh["x"], inputs["x"])
    again = fresh_inputs(inputs, seed=0, scale=3.0)
    assert torch.equal(again["x"], fresh["x"])  # seeded: the same draw every time


def test_fresh_float_inputs_have_the_asked_spread() -> None:
    x = torch.linspace(-1.0, 1.0, 10_001)
    fresh = fresh_inputs(x, seed=1, scale=3.0)
    assert float(fresh.std()) == pytest.approx(3 * float(x.std()), rel=0.05)
    assert float(fresh.mean()) == pytest.approx(0.0, abs=0.1)


def test_each_output_is_judged_against_its_own_scale() -> None:
    # one global scale (100) would allow 0.1 everywhere; output 1 (scale 1) allows only 1e-3
    got = [torch.tensor([100.0]), torch.tensor([1.01])]
    want = [torch.tensor([100.0]), torch.tensor([1.0])]
    diff, scale, tol = compare_outputs(got, want, atol=1e-3)
    assert diff == pytest.approx(0.01, rel=1e-4) and scale == 1.0 and tol == pytest.approx(1e-3)
    assert diff > tol
    # all exact: the largest scale is reported
    assert compare_outputs(want, want, atol=1e-3) == (0.0, 100.0, pytest.approx(0.1))


def test_a_wrong_model_that_matches_on_the_example_inputs_fails_on_fresh_ones() -> None:
    net = _mlp()
    groups = build_structural_groups(net, X)
    pruned, _ = apply_surgery(net, groups, KEEP_LAST_TWO)
    with torch.no_grad():  # wrong weights on input features that X leaves at 0
        pruned[0].weight[:, 1:] += 5.0
    assert torch.equal(pruned(X), torch.tensor([[25.0, 7.0]]))  # still right on X
    for exhaustive in (False, True):
        with pytest.raises(VerificationError, match="on fresh inputs"):
            verify(net, pruned, groups, KEEP_LAST_TWO, X, exhaustive=exhaustive)


def test_a_correct_surgery_passes_on_fresh_inputs_with_one_path() -> None:
    net = _mlp()
    groups = build_structural_groups(net, X)
    pruned, _ = apply_surgery(net, groups, KEEP_LAST_TWO)
    report = verify(net, pruned, groups, KEEP_LAST_TWO, X)
    assert report.fresh_inputs == 1 and report.paths == 1  # one path: one fresh draw
    assert report.fresh_relative_diff < 1e-6 and report.complete


class Branchy(nn.Module):
    """Adds the first two hidden units to the output only when some input is below -1: a
    branch on input values that the example inputs (all in [0, 1)) never take."""

    def __init__(self, positional: bool) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)
        self.positional = positional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if bool((x < -1).any()):
            return self.b(h) + (h[:, :2] if self.positional else 2 * self.b(h))
        return self.b(h)


def _branchy(positional: bool) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return Branchy(positional).eval(), torch.rand(8, 3)


def test_a_branch_on_input_values_that_breaks_surgery_is_refused_naming_it() -> None:
    # the other path reads hidden units by position: after removing units 0 and 1 the pruned
    # model reads units 2 and 3 there, the masked original reads zeros
    model, x = _branchy(positional=True)
    groups = build_structural_groups(model, x)
    pruned, _ = apply_surgery(model, groups, {"a": KEEP_LAST_TWO["0"]})
    with pytest.raises(VerificationError, match="control flow depends on input values"):
        verify(model, pruned, groups, {"a": KEEP_LAST_TWO["0"]}, x)


def test_a_harmless_branch_is_verified_on_several_draws_and_warned_about() -> None:
    model, x = _branchy(positional=False)
    groups = build_structural_groups(model, x)
    selection = {"a": KEEP_LAST_TWO["0"]}
    pruned, _ = apply_surgery(model, groups, selection)
    with pytest.warns(UserWarning, match="control flow depends on input values"):
        report = verify(model, pruned, groups, selection, x)
    assert report.paths == 2 and report.fresh_inputs == 3  # every scale of FRESH_SCALES


def test_the_op_recorder_sees_both_paths() -> None:
    model, x = _branchy(positional=False)
    seen = []
    for inputs in (x, -3 * x - 1):
        with torch.no_grad(), OpRecorder() as recorder:
            model(inputs)
        seen.append([str(op) for op in recorder.ops])
    assert seen[0] != seen[1] and len(seen[1]) > len(seen[0])


def test_verification_leaves_the_models_and_the_global_generator_alone() -> None:
    net = _mlp()
    groups = build_structural_groups(net, X)
    pruned, _ = apply_surgery(net, groups, KEEP_LAST_TWO)
    before, pruned_before = copy.deepcopy(net.state_dict()), copy.deepcopy(pruned.state_dict())
    state = torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verify(net, pruned, groups, KEEP_LAST_TWO, X)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, t in net.state_dict().items():
        assert torch.equal(t, before[name])
    for name, t in pruned.state_dict().items():
        assert torch.equal(t, pruned_before[name])
