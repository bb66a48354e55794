"""The search space: floors, exact sparsities, the unreachable budget and the projection, on a
4 -> 10 -> 10 -> 3 MLP whose MACs are worked out by hand (kept units k1, k2 of the two hidden
layers cost 4*k1 + k1*k2 + 3*k2 of 170)."""

from __future__ import annotations

import pytest
import torch

from prunekit.budget import Target
from prunekit.config import make_config
from prunekit.errors import ConfigError
from prunekit.search.prepare import build_space, prepare
from prunekit.search.space import Dimension, SearchSpace

from .conftest import mlp


def space(keep: float, metric: str = "macs", **options: object) -> SearchSpace:
    config = make_config(None, {"granularity": "channel", "sparsity": 0.0, **options})
    prepared = prepare(mlp(), torch.randn(1, 4), config, None)
    return build_space(prepared, Target(metric, keep), tolerance=0.02)  # type: ignore[arg-type]


def test_dimensions_are_the_hidden_layers_with_their_floors() -> None:
    s = space(0.5)
    assert [(d.layer, d.n_units, d.floor) for d in s.dims] == [("0", 10, 1), ("2", 10, 1)]
    assert s.costs["macs"].dense == 170


def test_sparsity_removes_whole_units_and_respects_the_floor() -> None:
    d = Dimension("fc", "fc", n_units=10, floor=1)
    assert d.sparsity(0.26) == 0.7  # round(7.4) = 7 units removed
    assert d.sparsity(0.0) == 0.9  # the floor keeps 1
    assert d.sparsity(1.0) == 0.0
    assert d.low == 0.1


def test_ratio_is_worked_out_by_hand() -> None:
    s = space(0.5)
    # k1 = 6, k2 = 3: 24 + 18 + 9 = 51 of 170
    assert s.ratio({"0": 0.4, "2": 0.7}, "macs") == pytest.approx(51 / 170)


def test_unreachable_budget_names_the_lowest_reachable_ratio() -> None:
    # every layer at its floor (1 unit): 4 + 1 + 3 = 8 of 170 = 0.0471
    with pytest.raises(ConfigError, match=r"lowest reachable macs ratio is 0\.0471"):
        space(0.04)


def test_projection_walks_to_the_floor_until_the_budget_is_met() -> None:
    s = space(0.5)
    # both layers dense cost 170; along the path both keep k: 7k + k^2 <= 85 -> k = 6 (78)
    projected = s.project({"0": 0.0, "2": 0.0}, fill=False)
    assert projected == {"0": 0.4, "2": 0.4}
    assert s.ratio(projected, "macs") == pytest.approx(78 / 170)
    # filling cannot give a unit back: 7 and 6 cost 88, 6 and 7 cost 87, both over 85
    assert s.project({"0": 0.0, "2": 0.0}, fill=True) == {"0": 0.4, "2": 0.4}


def test_candidate_within_budget_is_kept_and_fill_spends_the_budget() -> None:
    s = space(0.5)
    assert s.project({"0": 0.5, "2": 0.5}, fill=False) == {"0": 0.5, "2": 0.5}  # 20+25+15=60
    # 2 and 2 units cost 18 of 170, far under: toward dense both reach k = 6 (78), and no
    # single unit more fits (88, 87 > 85)
    assert s.project({"0": 0.8, "2": 0.8}, fill=True) == {"0": 0.4, "2": 0.4}


def test_params_budget() -> None:
    s = space(0.5, metric="params")
    projected = s.project({"0": 0.0, "2": 0.0}, fill=True)
    assert s.ratio(projected, "params") <= 0.5
