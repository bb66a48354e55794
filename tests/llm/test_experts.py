"""Expert pruning of a tiny Mixtral: scores from routing, exact removal, config round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, DataError
from prunekit.llm.experts import expert_scores, find_moe_blocks, prune_experts, remove_experts

from .conftest import VOCAB, transformers


@pytest.fixture
def tiny_mixtral() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.MixtralConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=64,
    )
    return transformers.MixtralForCausalLM(config).eval()


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _forbidding(expert: int):  # type: ignore[no-untyped-def]
    """A router hook that routes as Mixtral does with ``expert`` made unreachable."""

    def hook(module: nn.Module, args: tuple[torch.Tensor], output: tuple) -> tuple:  # type: ignore[type-arg]
        logits = output[0].clone()
        logits[:, expert] = float("-inf")
        top, index = logits.float().softmax(-1).topk(module.top_k, dim=-1)
        return logits, top / top.sum(-1, keepdim=True), index

    return hook


def test_removing_an_expert_equals_routing_around_it(
    tiny_mixtral: nn.Module, windows: torch.Tensor
) -> None:
    scores = expert_scores(tiny_mixtral, windows)
    result = prune_experts(tiny_mixtral, windows, 1)
    assert result.removed == {name: [int(s.argmin())] for name, s in scores.items()}
    handles = [
        b.router.register_forward_hook(_forbidding(result.removed[b.name][0]))
        for b in find_moe_blocks(tiny_mixtral)
    ]
    reference = _logits(tiny_mixtral, windows)
    for handle in handles:
        handle.remove()
    assert torch.allclose(_logits(result.model, windows), reference, atol=1e-5)
    assert result.model.config.num_local_experts == 3
    assert tiny_mixtral.config.num_local_experts == 4  # the user's model is untouched
    per_expert = 2 * 48 * 32 + 32 * 48 + 32  # gate_up + down + router row, per block
    assert result.params_before - result.params_after == 2 * per_expert


def test_frequency_counts_top_k_choices(tiny_mixtral: nn.Module, windows: torch.Tensor) -> None:
    scores = expert_scores(tiny_mixtral, windows, metric="frequency")
    tokens = windows.numel()
    assert all(float(s.sum()) == 2 * tokens for s in scores.values())


def test_pruned_model_round_trips_through_from_pretrained(
    tiny_mixtral: nn.Module, windows: torch.Tensor, tmp_path: Path
) -> None:
    result = prune_experts(tiny_mixtral, windows, 2)
    result.model.save_pretrained(tmp_path)
    loaded = transformers.MixtralForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(_logits(loaded, windows), _logits(result.model, windows))


def test_bad_requests_are_refused(tiny_mixtral: nn.Module, windows: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match=r"integer in \[1, 2\]"):
        prune_experts(tiny_mixtral, windows, 3)
    with pytest.raises(ConfigError, match="metric must be one of"):
        expert_scores(tiny_mixtral, windows, metric="entropy")
    with pytest.raises(DataError, match="token windows"):
        expert_scores(tiny_mixtral, windows[0])
    with pytest.raises(ConfigError, match="no mixture-of-experts block named 'nope'"):
        remove_experts(tiny_mixtral, {"nope": [0]})
    with pytest.raises(ConfigError, match="fewer than top-k"):
        remove_experts(tiny_mixtral, {"model.layers.0.mlp": [0, 1, 2]})
    with pytest.raises(ConfigError, match="no mixture-of-experts block"):
        prune_experts(nn.Linear(2, 2), windows, 1)
