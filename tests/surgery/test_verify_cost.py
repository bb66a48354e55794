"""Verification modes: the fast default (the model's dtype, no copy of any tensor) and the
exhaustive float64 check on copies. Both must pass a correct surgery, both must catch a wrong
one, and NaN or inf in an output fails both. A failure to measure never throws away a verified
result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit
from prunekit.graph import build_structural_groups
from prunekit.graph.blocks import find_residual_blocks
from prunekit.surgery import VerificationError, apply_surgery, verify
from prunekit.surgery.layers import remove_residual_blocks, verify_blocks
from prunekit.surgery.reference import MaskedRun, mask_factors


def _mlp() -> nn.Sequential:
    """Linear(3, 4) -> ReLU -> Linear(4, 2) with hand-set weights: hidden unit k has
    weight row [k + 1, 1, 1] and bias 0, and the output layer reads hidden unit k with weight
    (k + 1) into output 0 and 1 into output 1."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1, 1], [2, 1, 1], [3, 1, 1], [4, 1, 1]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 2, 3, 4], [1, 1, 1, 1]]))
        net[2].bias.zero_()
    return net.eval()


X = torch.tensor([[1.0, 0.0, 0.0]])  # hidden = [1, 2, 3, 4], outputs = [30, 10]


def _keep_last_two() -> tuple[nn.Module, list, dict, nn.Module]:
    net = _mlp()
    groups = build_structural_groups(net, X)
    assert [g.name for g in groups] == ["0"] and groups[0].n_units == 4
    selection = {"0": torch.tensor([False, False, True, True])}
    pruned, _ = apply_surgery(net, groups, selection)
    return net, groups, selection, pruned


def test_hand_worked_pruned_outputs_and_both_modes_pass() -> None:
    net, groups, selection, pruned = _keep_last_two()
    # hidden units 2 and 3 stay: outputs [3*3 + 4*4, 3 + 4] = [25, 7]
    assert torch.equal(pruned(X), torch.tensor([[25.0, 7.0]]))
    fast = verify(net, pruned, groups, selection, X)
    assert not fast.exhaustive and fast.dtype == "torch.float32"
    assert fast.max_abs_diff == 0.0 and fast.scale == 25.0 and fast.verified == ("0",)
    assert fast.tolerance == pytest.approx(25 * 1e-4)  # FAST_ATOL relative to max |output|
    full = verify(net, pruned, groups, selection, X, exhaustive=True)
    assert full.exhaustive and full.dtype == "torch.float64"
    assert full.max_abs_diff == 0.0 and full.scale == 25.0
    assert full.tolerance == pytest.approx(25 * 1e-5)  # DEFAULT_ATOL


@pytest.mark.parametrize("exhaustive", [False, True])
def test_a_wrong_surgery_fails_in_both_modes(exhaustive: bool) -> None:
    net, groups, selection, _ = _keep_last_two()
    # surgery keeps units 0 and 1 while the selection says 2 and 3: outputs [1 + 4, 2] = [5, 2]
    wrong, _ = apply_surgery(net, groups, {"0": torch.tensor([True, True, False, False])})
    # |[25, 7] - [5, 2]| = 20 > 1e-4 * 25 (float32), 1e-5 * 25 (float64)
    bound = "0.00025" if exhaustive else "0.0025"
    with pytest.raises(VerificationError, match=rf"max \|pruned - masked\| = 20 > {bound}\."):
        verify(net, wrong, groups, selection, X, exhaustive=exhaustive)


@pytest.mark.parametrize("exhaustive", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_the_pruned_outputs_fails(exhaustive: bool, bad: float) -> None:
    net, groups, selection, pruned = _keep_last_two()
    with torch.no_grad():
        pruned[2].bias[1] = bad  # output 1 of the pruned model becomes NaN / inf
    with pytest.raises(VerificationError, match="NaN or inf"):
        verify(net, pruned, groups, selection, X, exhaustive=exhaustive)


@pytest.mark.parametrize("exhaustive", [False, True])
def test_nan_in_the_reference_outputs_fails(exhaustive: bool) -> None:
    net, groups, selection, pruned = _keep_last_two()
    with torch.no_grad():
        net[2].bias[0] = float("nan")  # both models output NaN: nothing can be compared
        pruned[2].bias[0] = float("nan")
    with pytest.raises(VerificationError, match="NaN or inf"):
        verify(net, pruned, groups, selection, X, exhaustive=exhaustive)


def test_fast_mode_leaves_the_original_as_it_was() -> None:
    net, groups, selection, pruned = _keep_last_two()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    verify(net, pruned, groups, selection, X)
    assert net.training and net[0].training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_mask_factors_are_vectors_and_masked_runs_zero_the_removed_units() -> None:
    net, groups, selection, _ = _keep_last_two()
    factors = mask_factors(net, groups, selection)
    shapes = {id(t): [tuple(f.shape) for f in fs] for t, fs in factors.values()}
    # rows of the first weight and its bias, columns of the second weight: one vector each
    assert shapes == {
        id(net[0].weight): [(4, 1)],
        id(net[0].bias): [(4,)],
        id(net[2].weight): [(1, 4)],
    }
    with torch.no_grad(), MaskedRun(factors):
        out = net(X)
    assert torch.equal(out, torch.tensor([[25.0, 7.0]]))
    assert net[0].weight[0, 0] == 1.0  # read masked, never changed


def test_half_precision_models_are_compared_in_float32() -> None:
    net, groups, selection, _ = _keep_last_two()
    net = net.to(torch.bfloat16)
    pruned, _ = apply_surgery(net, groups, selection)
    report = verify(net, pruned, groups, selection, X.to(torch.bfloat16))
    assert report.dtype == "torch.float32 (from torch.bfloat16)"
    assert report.max_abs_diff == 0.0 and report.scale == 25.0


def test_verification_counts_the_macs_of_both_models() -> None:
    net, groups, selection, pruned = _keep_last_two()
    report = verify(net, pruned, groups, selection, X, count_macs=True)
    assert report.macs_before is not None and report.macs_after is not None
    assert report.macs_before.total == 3 * 4 + 4 * 2  # 20
    assert report.macs_after.total == 3 * 2 + 2 * 2  # 10
    assert verify(net, pruned, groups, selection, X).macs_before is None


class _WithComplexBuffer(nn.Module):
    """A conv net holding a complex128 buffer, which safetensors cannot store: measuring the
    size on disk fails, pruning and verification do not."""

    phase: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
        self.register_buffer("phase", torch.zeros(2, dtype=torch.complex128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_failure_to_measure_keeps_the_verified_result() -> None:
    torch.manual_seed(0)
    model = _WithComplexBuffer().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = prunekit.prune(model, torch.randn(1, 3, 8, 8), sparsity=0.5, granularity="channel")
    assert result.model.body[0].out_channels == 4
    assert result.verification is not None and result.verification.verified == ("body.0",)
    assert result.before is None and result.after is None
    measured = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("complex128" in str(w.message) for w in measured)


@pytest.mark.slow
def test_the_verification_cost_benchmark_runs_its_quick_config(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    done = subprocess.run(
        [
            sys.executable, str(bench / "verification_cost.py"),
            str(bench / "configs" / "verification_cost.yaml"), "--quick", "--out", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    arms = {row["arm"]: row for row in results["summary"]}
    assert set(arms) == {"prunekit", "prunekit_exhaustive", "torch_pruning"}
    assert arms["torch_pruning"]["cpu_s_ratio_to_tp"] == 1.0
    assert all(row["runs"] for row in results["rows"])
    assert (tmp_path / "results.md").read_text().count("\n|") == 4  # separator + 3 arms


class _Residual(nn.Module):
    """``x + relu(fc(x))``: a removable block."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


@pytest.mark.parametrize("exhaustive", [False, True])
def test_block_verification_modes_and_nan(exhaustive: bool) -> None:
    net = nn.Sequential(_Residual(), _Residual()).eval()
    with torch.no_grad():
        net[0].fc.weight.copy_(torch.eye(2))
        net[0].fc.bias.zero_()
    x = torch.tensor([[1.0, -2.0]])
    pruned, plan = remove_residual_blocks(net, find_residual_blocks(net, x)[:1])
    report = verify_blocks(net, pruned, plan, x, exhaustive=exhaustive)
    assert report.exhaustive is exhaustive and report.max_abs_diff == 0.0
    assert report.dtype == ("torch.float64" if exhaustive else "torch.float32")
    with torch.no_grad():
        pruned[1].fc.bias[0] = float("nan")
    with pytest.raises(VerificationError, match="NaN or inf"):
        verify_blocks(net, pruned, plan, x, exhaustive=exhaustive)
