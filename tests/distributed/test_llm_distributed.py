"""Wanda and SparseGPT with the calibration windows and the per-layer solves split over two Gloo
processes give the masks and weights of one process that saw every window."""

from __future__ import annotations

from typing import Any

import dist_workers as workers
import pytest
import torch

from prunekit.distributed import prune_llm_distributed, run_processes
from prunekit.errors import ConfigError, DataError
from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.masks import masks_of

CASES = [("wanda", None), ("sparsegpt", None), ("sparsegpt", "2:4")]


@pytest.fixture(scope="module")
def two_ranks() -> list[list[Any]]:
    """Both ranks' results of every case, and of the hand-worked reduction, from one spawn."""
    calls = [("prune_tiny_llama", (m, p, 5)) for m, p in CASES]
    unsplit = ("prune_tiny_llama", ("sparsegpt", None, 5, False))
    solved = [("solved_here", ("sparsegpt",)), ("solved_here", ("wanda",))]
    return run_processes(workers.many, 2, [*calls, unsplit, *solved, ("reduce_hand_stats", ())])


def test_statistics_are_summed_over_ranks(two_ranks: list[list[Any]]) -> None:
    # rank 0 saw rows [1, 2], [0, 1]; rank 1 saw [2, 2], [0, 2]
    for rank in two_ranks:
        rows, sq_norms, gram = rank[-1]["a"]
        assert rows == 4
        assert sq_norms.tolist() == [5.0, 13.0]  # 1 + 0 + 4 + 0, 4 + 1 + 4 + 4
        assert gram.tolist() == [[5.0, 6.0], [6.0, 13.0]]
        assert rank[-1]["b"][0] == 4 and rank[-1]["b"][2] is None


@pytest.mark.parametrize("case", range(len(CASES)))
def test_two_ranks_give_the_masks_of_one_process(two_ranks: list[list[Any]], case: int) -> None:
    method, pattern = CASES[case]
    config = LLMPruneConfig(method=method, sparsity=0.5, pattern=pattern)
    reference = prune_llm(workers.tiny_llama(), workers.windows(5), config, progress=False)
    expected = masks_of(reference.model)
    state = reference.model.state_dict()
    for rank in two_ranks:
        got = rank[case]
        assert sorted(got["masks"]) == sorted(expected)
        for name, mask in expected.items():
            assert torch.equal(got["masks"][name], mask), name
        for name, value in state.items():
            assert torch.equal(got["state"][name], value), name
    assert all(
        torch.equal(v, two_ranks[1][case]["state"][k])
        for k, v in two_ranks[0][case]["state"].items()
    )


def test_repeated_solves_give_the_split_solves_result(two_ranks: list[list[Any]]) -> None:
    for rank in two_ranks:
        unsplit, split = rank[len(CASES)]["state"], rank[1]["state"]
        assert all(torch.equal(v, split[k]) for k, v in unsplit.items())


def test_each_layer_is_solved_on_one_rank(two_ranks: list[list[Any]]) -> None:
    for offset in (1, 2):  # sparsegpt, wanda
        ranks = [rank[len(CASES) + offset] for rank in two_ranks]
        names = workers_layer_names()
        assert sorted(ranks[0] + ranks[1]) == sorted(names)
        assert not set(ranks[0]) & set(ranks[1])
    # SparseGPT: down_proj (64 inputs) costs 480,597 multiply-adds, the other six layers
    # 491,520 together (test_solve.py), so rank 0 solves down_proj alone
    assert two_ranks[0][len(CASES) + 1] == [
        "model.layers.0.mlp.down_proj",
        "model.layers.1.mlp.down_proj",
    ]


def workers_layer_names() -> list[str]:
    from prunekit.llm.sequential import layer_names

    return layer_names(workers.tiny_llama())


def test_wanda_weights_are_bitwise_those_of_one_process(two_ranks: list[list[Any]]) -> None:
    config = LLMPruneConfig(method="wanda", sparsity=0.5)
    reference = prune_llm(workers.tiny_llama(), workers.windows(5), config, progress=False)
    for name, value in reference.model.state_dict().items():
        assert torch.equal(two_ranks[0][0]["state"][name], value), name


def test_needs_a_process_group() -> None:
    with pytest.raises(ConfigError, match="process group"):
        prune_llm_distributed(workers.tiny_llama(), workers.windows(2), LLMPruneConfig())


@pytest.mark.usefixtures("solo_group")
def test_refuses_owl_and_empty_calibration() -> None:
    model = workers.tiny_llama()
    with pytest.raises(ConfigError, match="owl"):
        prune_llm_distributed(model, workers.windows(2), LLMPruneConfig(allocation="owl"))
    with pytest.raises(DataError, match=r"n >= 1"):
        prune_llm_distributed(model, torch.zeros(0, 4, dtype=torch.long), LLMPruneConfig())


@pytest.mark.usefixtures("solo_group")
def test_one_rank_is_prune_llm() -> None:
    config = LLMPruneConfig(method="sparsegpt", sparsity=0.5)
    got = prune_llm_distributed(workers.tiny_llama(), workers.windows(3), config)
    expected = prune_llm(workers.tiny_llama(), workers.windows(3), config, progress=False)
    for name, value in expected.model.state_dict().items():
        assert torch.equal(got.model.state_dict()[name], value), name
