"""The magnitude estimator's one-tensor-at-a-time sums equal the element-wise definition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.core.groups import Group, Scores, group_tensors
from prunekit.estimators import get_estimator
from prunekit.estimators.weights import Magnitude
from prunekit.granularity import build_groups, get_granularity
from prunekit.graph import build_structural_groups


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 3),
    )  # fmt: skip


def _definition(estimator: Magnitude, model: nn.Module, groups: list[Group]) -> Scores:
    values = {n: t.float().abs().pow(estimator.p) for n, t in group_tensors(model, groups).items()}
    return {g.name: g.reduce(values, estimator.reduction) for g in groups}


@pytest.mark.parametrize("spec", ["structural", "element", "2:4", "block:2x2", "channel"])
@pytest.mark.parametrize("options", [{}, {"p": 2.0}, {"reduction": "mean"}, {"reduction": "max"}])
def test_sums_match_the_elementwise_definition(spec: str, options: dict[str, object]) -> None:
    model = _net()
    if spec == "structural":
        groups = list(build_structural_groups(model, torch.randn(1, 4, 8, 8)))
    else:
        groups = build_groups(model, get_granularity(spec), exclude=["0"])
    estimator = get_estimator("magnitude", **options)
    assert isinstance(estimator, Magnitude)
    got, want = estimator.score(model, groups, None), _definition(estimator, model, groups)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-6)
