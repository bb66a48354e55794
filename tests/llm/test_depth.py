"""Depth pruning on tiny random LLaMA and BERT models: block scores, surgery, cache, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.llm import (
    BLOCK_SCORES,
    find_blocks,
    lowest_blocks,
    prune_depth,
    remove_blocks,
    score_blocks,
)

from .conftest import VOCAB

transformers = pytest.importorskip("transformers")


@pytest.fixture
def llama4() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture
def bert3() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.5,  # blocks that change their input visibly
    )
    return transformers.BertModel(config).eval()


def _make_identity(model: nn.Module, index: int) -> None:
    """Zero the projections that write into the residual stream of block ``index``.

    A pre-norm LLaMA block is then exactly the identity; a post-norm BERT block is the identity
    up to LayerNorm's eps because its input is already normalised (LayerNorm weight 1, bias 0).
    """
    block = find_blocks(model).blocks[index]
    with torch.no_grad():
        if hasattr(block, "self_attn"):
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
        else:
            for dense in (block.attention.output.dense, block.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()


def _out(model: nn.Module, ids: Tensor) -> Tensor:
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("metric", BLOCK_SCORES.names())
def test_scores_are_in_range_and_an_identity_block_scores_zero(
    metric: str, llama4: nn.Module, windows: Tensor
) -> None:
    _make_identity(llama4, 2)
    scores = score_blocks(llama4, windows, metric)
    assert len(scores) == 4
    assert scores[2] == pytest.approx(0.0, abs=1e-5)
    if metric == "angular":  # skipping a random block may even lower the NLL: no range
        assert all(0.0 <= s <= 2.0 for s in scores)
        assert lowest_blocks(scores, 1) == [2]


def test_bert_scores_are_in_range(bert3: nn.Module, windows: Tensor) -> None:
    _make_identity(bert3, 1)
    scores = score_blocks(bert3, windows, "angular")
    assert all(0.0 <= s <= 2.0 for s in scores)
    assert scores[1] == pytest.approx(0.0, abs=1e-6)
    assert min(scores[0], scores[2]) > 1e-2


def test_angular_score_of_block_0_matches_a_direct_computation(
    llama4: nn.Module, windows: Tensor
) -> None:
    block = find_blocks(llama4).blocks[0]
    seen: list[tuple[Tensor, Tensor]] = []
    handle = block.register_forward_hook(
        lambda m, a, kw, o: seen.append((kw["hidden_states"] if not a else a[0], o)),
        with_kwargs=True,
    )
    with torch.no_grad():
        for row in windows:
            llama4(row[None], use_cache=False)
    handle.remove()
    cos = [torch.cosine_similarity(x, y[0] if isinstance(y, tuple) else y, dim=-1) for x, y in seen]
    expected = float((1 - torch.cat([c.flatten() for c in cos])).mean())
    assert score_blocks(llama4, windows)[0] == pytest.approx(expected, rel=1e-5)


def test_lowest_blocks_hand_worked() -> None:
    assert lowest_blocks([0.3, 0.1, 0.5, 0.2], 2) == [1, 3]
    assert lowest_blocks([0.3, 0.1, 0.5, 0.1], 1) == [3]  # tie: the later block goes
    assert lowest_blocks([0.3, 0.1], 0) == []


@pytest.mark.parametrize("arch", ["llama4", "bert3"])
def test_removing_an_identity_block_leaves_outputs_unchanged(
    arch: str, windows: Tensor, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(arch)
    _make_identity(model, 1)
    result = prune_depth(model, windows, 1)
    assert result.removed == [1]
    assert len(find_blocks(result.model)) == len(find_blocks(model)) - 1
    assert result.model.config.num_hidden_layers == model.config.num_hidden_layers - 1
    torch.testing.assert_close(_out(result.model, windows), _out(model, windows), atol=1e-5, rtol=0)


def test_generation_with_a_kv_cache_after_removal(llama4: nn.Module) -> None:
    pruned = remove_blocks(llama4, [0, 2])
    indices = [block.self_attn.layer_idx for block in find_blocks(pruned).blocks]
    assert indices == [0, 1]
    assert [b.self_attn.layer_idx for b in find_blocks(llama4).blocks] == [0, 1, 2, 3]  # a copy
    ids = torch.tensor([[5, 17, 33, 2, 40]])
    options = dict(max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        cached = pruned.generate(ids, use_cache=True, **options)
        uncached = pruned.generate(ids, use_cache=False, **options)
    assert cached.shape[1] > ids.shape[1]
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("arch", ["llama4", "bert3"])
def test_save_pretrained_round_trip(
    arch: str, windows: Tensor, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(arch)
    pruned = prune_depth(model, windows, 2).model
    pruned.save_pretrained(tmp_path)
    loaded = type(pruned).from_pretrained(tmp_path).eval()
    assert loaded.config.num_hidden_layers == len(find_blocks(model)) - 2
    assert torch.equal(_out(loaded, windows), _out(pruned, windows))


@pytest.mark.parametrize("k", [4, 5, -1])
def test_bad_k_is_refused_by_name(k: int, llama4: nn.Module, windows: Tensor) -> None:
    with pytest.raises(ConfigError, match=r"k \(the number of blocks to remove\).*\[0, 4\)"):
        prune_depth(llama4, windows, k)


def test_bad_indices_are_refused(llama4: nn.Module) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        remove_blocks(llama4, [4])
    with pytest.raises(ConfigError, match="repeat"):
        remove_blocks(llama4, [1, 1])
    with pytest.raises(ConfigError, match="k "):
        remove_blocks(llama4, [0, 1, 2, 3])


def test_perplexity_metric_needs_a_causal_lm(bert3: nn.Module, windows: Tensor) -> None:
    from prunekit.errors import DataError

    with pytest.raises(DataError, match="causal language model"):
        score_blocks(bert3, windows, "perplexity")
