"""Surgery and plans on tiny models with hand-worked answers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from prunekit.core.groups import Group, Member
from prunekit.core.views import AxisView
from prunekit.errors import SaveFileError, SelectionError
from prunekit.graph import build_structural_groups
from prunekit.surgery import (
    Plan,
    VerificationError,
    apply_surgery,
    masked_copy,
    rebuild,
    rebuild_hook,
    verify,
)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))


def keep(n: int, removed: list[int]) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[removed] = False
    return mask


def test_plan_names_every_tensor_dim_and_index() -> None:
    model = mlp()
    groups = build_structural_groups(model, torch.randn(2, 4))
    assert [g.name for g in groups] == ["0", "2"]
    selection = {"0": keep(5, [1, 4]), "2": keep(3, [])}
    pruned, plan = apply_surgery(model, groups, selection)
    data = json.loads(plan.to_json())
    assert data["tensors"] == {
        "0.weight": {
            "shape_before": [5, 4],
            "shape_after": [3, 4],
            "dims": [{"dim": 0, "removed": [1, 4]}],
            "aliases": [],
        },
        "0.bias": {
            "shape_before": [5],
            "shape_after": [3],
            "dims": [{"dim": 0, "removed": [1, 4]}],
            "aliases": [],
        },
        "2.weight": {
            "shape_before": [3, 5],
            "shape_after": [3, 3],
            "dims": [{"dim": 1, "removed": [1, 4]}],
            "aliases": [],
        },
    }
    assert data["modules"] == {
        "0": {"type": ["Linear"], "out_features": [5, 3]},
        "2": {"type": ["Linear"], "in_features": [5, 3]},
    }
    assert data["groups"] == {"0": {"removed": [1, 4]}}
    assert pruned[0].out_features == 3 and pruned[2].in_features == 3
    torch.testing.assert_close(pruned[0].weight, model[0].weight[[0, 2, 3]])
    torch.testing.assert_close(pruned[2].weight, model[2].weight[:, [0, 2, 3]])


def test_removing_every_unit_is_refused_and_leaves_the_model() -> None:
    model = mlp()
    groups = build_structural_groups(model, torch.randn(2, 4))
    before = model[0].weight.clone()
    with pytest.raises(SelectionError, match="every unit of group '0'"):
        apply_surgery(model, groups, {"0": keep(5, [0, 1, 2, 3, 4]), "2": keep(3, [])})
    assert torch.equal(model[0].weight, before) and model[0].out_features == 5


def test_rebuild_refuses_a_plan_for_another_model() -> None:
    model = mlp()
    groups = build_structural_groups(model, torch.randn(2, 4))
    _, plan = apply_surgery(model, groups, {"0": keep(5, [0]), "2": keep(3, [2])})
    other = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(SaveFileError, match=r"'0\.weight' has shape"):
        rebuild(other, plan)
    rebuilt = rebuild_hook(model, plan.to_dict())
    assert rebuilt[0].out_features == 4 and rebuilt[2].out_features == 2
    with pytest.raises(SaveFileError, match="not a prunekit plan"):
        Plan.from_dict({"format": "other"})


def test_verify_names_the_group_that_breaks() -> None:
    model = mlp()
    groups = build_structural_groups(model, torch.randn(2, 4))
    # a group that forgets its consumer's columns: surgery gives a model that cannot run
    broken = Group("0", "0", tuple(m for m in groups[0].members if m.tensor != "2.weight"))
    bad_groups = [broken, groups[1]]
    selection = {"0": keep(5, [1]), "2": keep(3, [0])}
    pruned, _ = apply_surgery(model, [groups[0], groups[1]], selection)
    with pytest.raises(VerificationError, match=r"on their own: \['0'\]"):
        verify(
            model,
            apply_surgery(model, bad_groups, selection)[0],
            bad_groups,
            selection,
            torch.randn(2, 4),
        )
    report = verify(model, pruned, groups, selection, torch.randn(2, 4))
    assert report.verified == ("0", "2") and report.complete


def test_verify_catches_a_wrong_index_mapping() -> None:
    model = mlp()
    x = torch.randn(3, 4)
    groups = build_structural_groups(model, x)
    # the consumer's columns are shifted by one: the model runs but computes something else
    members = list(groups[0].members)
    members[-1] = Member("2.weight", AxisView((3, 5), 1, units=4, offset=1))
    first = [m for m in members[:-1]]
    shifted = Group(
        "0",
        "0",
        (
            *(
                Member(m.tensor, AxisView(m.view.shape, 0, 4))  # type: ignore[attr-defined]
                for m in first
            ),
            members[-1],
        ),
    )
    selection = {"0": keep(4, [0]), "2": keep(3, [])}
    pruned, _ = apply_surgery(model, [shifted, groups[1]], selection)
    with pytest.raises(VerificationError, match="max \\|pruned - masked\\|"):
        verify(model, pruned, [shifted, groups[1]], selection, x)


def test_inexact_groups_are_verified_against_the_kept_units_reference() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    x = torch.randn(2, 4)
    groups = build_structural_groups(model, x)
    selection = {"0": keep(6, [2, 3])}
    pruned, _ = apply_surgery(model, groups, selection)
    assert pruned[1].normalized_shape == (4,)
    report = verify(model, pruned, groups, selection, x)
    assert report.verified == ("0",) and report.verified_kept_reference == ("0",)
    assert report.unverified == () and report.complete


def test_masked_copy_zeroes_removed_units_only() -> None:
    model = mlp()
    groups = build_structural_groups(model, torch.randn(2, 4))
    masked = masked_copy(model, groups, {"0": keep(5, [2]), "2": keep(3, [])})
    assert torch.count_nonzero(masked[0].weight[2]) == 0
    assert torch.count_nonzero(masked[2].weight[:, 2]) == 0
    assert torch.equal(masked[0].weight[[0, 1, 3, 4]], model[0].weight[[0, 1, 3, 4]])


def test_tied_weights_stay_tied() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.fc = nn.Linear(6, 6)
            self.head = nn.Linear(6, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids: Tensor) -> Tensor:
            return self.head(torch.relu(self.fc(self.emb(ids))))

    torch.manual_seed(0)
    model = Tied()
    ids = torch.tensor([[1, 2, 3, 7]])
    groups = build_structural_groups(model, ids)
    selection = {"emb": keep(6, [0, 5])}
    pruned, plan = apply_surgery(model, groups, selection)
    assert pruned.head.weight is pruned.emb.weight
    assert pruned.emb.embedding_dim == 4 and pruned.head.in_features == 4
    assert plan.tensors["emb.weight"].aliases == ("head.weight",)
    assert verify(model, pruned, groups, selection, ids).verified == ("emb",)


def test_verification_against_all_zero_outputs_is_vacuous_and_warns() -> None:
    model = mlp()
    with torch.no_grad():  # a zero-initialised classifier: every output is 0 whatever is removed
        model[4].weight.zero_()
        model[4].bias.zero_()
    groups = build_structural_groups(model, torch.randn(2, 4))
    selection = {"0": keep(5, [1]), "2": keep(3, [0])}
    pruned, _ = apply_surgery(model, groups, selection)
    with pytest.warns(UserWarning, match="vacuous"):
        report = verify(model, pruned, groups, selection, torch.randn(2, 4))
    assert report.vacuous and not report.complete
