"""Balancing per-layer solves over ranks, and the plain-data check of what ranks send back."""

from __future__ import annotations

import dist_workers as workers
import pytest
import torch

from prunekit.distributed import assign_layers, check_plain, layer_cost, run_processes
from prunekit.errors import ConfigError


def test_assign_layers_longest_first_to_the_least_loaded_rank() -> None:
    costs = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 2.0}
    # a -> 0 (5); b -> 1 (4); c -> 1 (7); d -> 0 (8); e -> 1 (9)
    assert assign_layers(costs, 2) == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 1}
    assert assign_layers(costs, 1) == dict.fromkeys(costs, 0)
    # more ranks than layers: one layer each, the last rank idle
    assert assign_layers({"x": 1.0, "y": 1.0}, 3) == {"x": 0, "y": 1}
    with pytest.raises(ConfigError, match="world_size"):
        assign_layers(costs, 0)


def test_layer_cost_by_hand() -> None:
    down = torch.zeros(32, 64)
    # 4/3 * 64^3 + 32 * 64^2 = 349,525.33 + 131,072
    assert layer_cost(down, hessian=True) == pytest.approx(480_597.33, abs=0.01)
    # 32 * 64 * log2(64)
    assert layer_cost(down, hessian=False) == 12_288.0


def test_tiny_llama_block_costs() -> None:
    shapes = {"q": (32, 32), "k": (16, 32), "v": (16, 32), "o": (32, 32)}
    shapes |= {"gate": (64, 32), "up": (64, 32), "down": (32, 64)}
    costs = {n: layer_cost(torch.zeros(s), hessian=True) for n, s in shapes.items()}
    others = sum(c for n, c in costs.items() if n != "down")
    # 6 * 4/3 * 32^3 + (32 + 16 + 16 + 32 + 64 + 64) * 32^2 = 262,144 + 229,376
    assert others == pytest.approx(491_520.0)
    assert assign_layers(costs, 2) == {n: int(n == "down") ^ 1 for n in costs}


def test_check_plain_accepts_plain_data_and_names_the_rest() -> None:
    check_plain({"a": [1, 2.0, "x", None, (torch.ones(2), torch.float32)], 3: torch.Size([2])})
    with pytest.raises(
        ConfigError, match=r"result\['m'\]\[1\] is a torch.nn.modules.linear.Linear"
    ):
        check_plain({"m": [0, torch.nn.Linear(1, 1)]})
    with pytest.raises(ConfigError, match="key of type tuple"):
        check_plain({(1, 2): 0})


def test_a_rank_returning_a_module_fails_with_the_reason() -> None:
    with pytest.raises(Exception, match="sends back only tensors"):
        run_processes(workers.return_a_module, 1)
