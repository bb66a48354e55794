"""SparseGPT's inverse-Hessian factor and OBS update on hand-worked 2x2 cases."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.estimators.sparsegpt import inverse_hessian_factor, sparsegpt_prune

H = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
# H^-1 = [[2, -1], [-1, 2]] / 3; its upper Cholesky factor U (U^T U = H^-1):
# U00 = sqrt(2/3), U01 = (-1/3) / sqrt(2/3) = -1/sqrt(6), U11 = sqrt(2/3 - 1/6) = sqrt(1/2)
U = torch.tensor([[math.sqrt(2 / 3), -1 / math.sqrt(6)], [0.0, math.sqrt(0.5)]])


def test_inverse_hessian_factor_hand_worked() -> None:
    factor = inverse_hessian_factor(H, damp=1e-12)
    assert factor.dtype == torch.float32
    assert torch.allclose(factor, U, atol=1e-6)


def test_dead_inputs_get_a_unit_diagonal_before_damping() -> None:
    h = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    # diag becomes [1, 4], mean 2.5, damp 0.2 adds 0.5: inverse diag [1/1.5, 1/4.5]
    factor = inverse_hessian_factor(h, damp=0.2, dead=torch.tensor([True, False]))
    expected = torch.diag(torch.tensor([1 / 1.5, 1 / 4.5]).sqrt())
    assert torch.allclose(factor, expected, atol=1e-7)


def test_not_positive_definite_is_refused() -> None:
    with pytest.raises(ConfigError, match="not positive definite"):
        inverse_hessian_factor(torch.tensor([[1.0, 2.0], [2.0, 1.0]]), damp=1e-6)


def test_obs_update_moves_the_removed_weight_onto_the_kept_one() -> None:
    # saliency w^2 / U_jj^2: column 0: 1 / (2/3) = 1.5, column 1: 9 / (1/2) = 18 -> drop column 0;
    # OBS: w1 -= w0 * [H^-1]_01 / [H^-1]_00 = 3 - 1 * (-1/3) / (2/3) = 3.5
    weight = torch.tensor([[1.0, 3.0]])
    hessian = H.clone()
    new, keep = sparsegpt_prune(weight, hessian, sparsity=0.5, damp=1e-12)
    assert torch.equal(keep, torch.tensor([[False, True]]))
    assert new[0, 0] == 0.0 and new[0, 1] == pytest.approx(3.5, abs=1e-5)
    # the inputs are left as they were: one Hessian serves several layers
    assert torch.equal(hessian, H) and torch.equal(weight, torch.tensor([[1.0, 3.0]]))


def test_a_dead_input_is_removed_and_the_hessian_left_intact() -> None:
    # input 0 never carried signal: its weights become 0 and the other column is untouched
    hessian = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    weight = torch.tensor([[5.0, 1.0], [-2.0, 3.0]])
    new, keep = sparsegpt_prune(weight, hessian, sparsity=0.5, blocksize=2)
    assert torch.equal(keep, torch.tensor([[False, True], [False, True]]))
    assert torch.equal(new, torch.tensor([[0.0, 1.0], [0.0, 3.0]]))
    assert torch.equal(hessian, torch.tensor([[0.0, 0.0], [0.0, 4.0]]))


def test_a_transposed_weight_view_is_not_written_to() -> None:
    base = torch.tensor([[1.0], [3.0]])
    new, _ = sparsegpt_prune(base.T, H, sparsity=0.5, damp=1e-12)  # weight.T is contiguous
    assert torch.equal(base, torch.tensor([[1.0], [3.0]]))
    assert new[0, 1] == pytest.approx(3.5, abs=1e-5)
