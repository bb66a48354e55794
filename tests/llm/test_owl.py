"""OWL (outlier-weighted layerwise sparsity): hand-worked allocations, invariants, and prune_llm."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.llm import LLMPruneConfig, find_blocks, prune_llm
from prunekit.llm.owl import block_outlier_ratios, outlier_ratio, owl_sparsities

from .conftest import VOCAB

transformers = pytest.importorskip("transformers")


def test_outlier_ratio_hand_worked() -> None:
    scores = torch.tensor([1.0] * 9 + [100.0])  # mean 10.9; 5 x mean = 54.5: one outlier
    assert outlier_ratio([scores[:4], scores[4:]], 5.0) == pytest.approx(0.1)
    assert outlier_ratio([scores], 10.0) == 0.0


def test_owl_sparsities_hand_worked() -> None:
    # centred ratios [-0.01, 0.01, 0], largest deviation 0.01: sparsity 0.5 -/+ 0.1
    got = owl_sparsities([0.01, 0.03, 0.02], 0.5, 0.1)
    assert got == pytest.approx([0.6, 0.4, 0.5], abs=1e-12)
    assert owl_sparsities([0.2, 0.2], 0.5, 0.1) == [0.5, 0.5]  # no difference: uniform


@settings(max_examples=60, deadline=None)
@given(
    ratios=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=40),
    target=st.floats(0.2, 0.7),
    lam=st.floats(0.0, 0.2),
)
def test_owl_mean_is_the_target_and_bounds_hold(
    ratios: list[float], target: float, lam: float
) -> None:
    got = owl_sparsities(ratios, target, lam)
    assert sum(got) / len(got) == pytest.approx(target, abs=1e-12)
    assert all(target - lam - 1e-12 <= s <= target + lam + 1e-12 for s in got)
    for a, sa in zip(ratios, got, strict=True):  # more outliers, lower (or equal) sparsity
        for b, sb in zip(ratios, got, strict=True):
            if a > b:
                assert sa <= sb + 1e-12


@pytest.mark.parametrize("lam", [-0.1, 0.5, 0.6])
def test_bad_lambda_is_refused_by_name(lam: float) -> None:
    with pytest.raises(ConfigError, match="owl_lambda"):
        LLMPruneConfig(sparsity=0.5, allocation="owl", owl_lambda=lam)


def test_owl_refuses_n_m_and_missing_data(windows: Tensor) -> None:
    with pytest.raises(ConfigError, match="N:M"):
        LLMPruneConfig(allocation="owl", pattern="2:4")
    with pytest.raises(ConfigError, match="allocation"):
        LLMPruneConfig(allocation="owls")  # type: ignore[arg-type]
    config = LLMPruneConfig(method="magnitude", allocation="owl")
    with pytest.raises(DataError, match="owl"):
        prune_llm(_llama(), None, config, progress=False)


def _llama() -> nn.Module:
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


def _add_outliers(model: nn.Module, index: int) -> None:
    """Multiply 3% of the weights of every Linear of block ``index`` by 30."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in find_blocks(model).blocks[index].modules():
            if isinstance(module, nn.Linear):
                picked = torch.rand(module.weight.shape, generator=generator) < 0.03
                module.weight[picked] *= 30.0


def test_the_block_with_more_outliers_gets_lower_sparsity(windows: Tensor) -> None:
    model = _llama()
    dense_ratios = block_outlier_ratios(model, windows)
    # the last block: outliers in an earlier block also raise the input norms of later ones
    _add_outliers(model, 3)
    ratios = block_outlier_ratios(model, windows)
    assert ratios[:3] == dense_ratios[:3]
    assert ratios[3] > 2 * max(dense_ratios) and ratios.index(max(ratios)) == 3
    config = LLMPruneConfig(method="wanda", sparsity=0.5, allocation="owl", owl_lambda=0.1)
    result = prune_llm(model, windows, config, progress=False)
    stack = find_blocks(model)
    per_block = []
    for i in range(len(stack)):
        values = {
            v for k, v in result.config.layer_sparsity.items() if k.startswith(stack.name(i) + ".")
        }
        assert len(values) == 1  # one sparsity for every Linear of a block
        per_block.append(values.pop())
    assert sum(per_block) / len(per_block) == pytest.approx(0.5, abs=1e-12)
    assert per_block[3] == pytest.approx(0.4) and per_block[3] == min(per_block)
    for name, achieved in result.layer_sparsity.items():  # per row: within one weight of a row
        cols = model.get_submodule(name).weight.shape[1]
        assert abs(achieved - result.config.layer_sparsity[name]) <= 0.5 / cols + 1e-9


def test_explicit_layer_sparsity_wins_over_owl(windows: Tensor) -> None:
    model = _llama()
    name = "model.layers.0.mlp.down_proj"
    config = LLMPruneConfig(sparsity=0.5, allocation="owl", layer_sparsity={name: 0.25})
    result = prune_llm(model, windows, config, progress=False)
    assert result.layer_sparsity[name] == pytest.approx(0.25)
    assert result.config.layer_sparsity[name] == 0.25
