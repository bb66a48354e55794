"""Head and MLP-width pruning of Hugging Face attention (BERT, GPT-2 fused qkv, LLaMA with
grouped-query attention) on tiny random-initialised configs: no hub downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import prunekit
from prunekit import io
from prunekit.result import PruneResult
from prunekit.surgery import rebuild_hook

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def transformers() -> Any:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    import transformers as hf

    return hf


def ids() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))}


def heads_and_mlp(model: nn.Module, include: list[str], sparsity: float = 0.5) -> PruneResult:
    result = prunekit.prune(
        model, ids(), sparsity=sparsity, granularity="channel", estimator="magnitude",
        scope="layer", include=include,
    )  # fmt: skip
    assert isinstance(result, PruneResult)
    assert result.verification is not None and result.verification.complete
    return result


def test_bert_whole_heads_and_config(transformers: Any) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=16,
    )  # fmt: skip
    model = transformers.BertModel(config).eval()
    result = heads_and_mlp(model, ["*.attention.self.query", "*.intermediate.dense"])
    head_groups = [g for g in result.groups if g.layer.endswith("attention.self.query")]
    assert [g.n_units for g in head_groups] == [4, 4]  # a unit is a whole head
    pruned: Any = result.model
    for layer in pruned.encoder.layer:
        attention = layer.attention.self
        assert attention.num_attention_heads == 2 and attention.all_head_size == 16
        assert attention.query.weight.shape == (16, 32) and attention.key.weight.shape == (16, 32)
        assert layer.attention.output.dense.weight.shape == (32, 16)
        assert layer.intermediate.dense.weight.shape == (32, 32)
    assert pruned.config.num_attention_heads == 2 and pruned.config.intermediate_size == 32
    assert model.config.num_attention_heads == 4  # the user's model keeps its config


def test_gpt2_fused_qkv_heads(transformers: Any) -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    result = heads_and_mlp(model, ["*.attn.c_attn", "*.mlp.c_fc"])
    pruned: Any = result.model
    for block in pruned.transformer.h:
        assert block.attn.c_attn.weight.shape == (32, 48)  # [q | k | v] of 2 heads of 8
        assert block.attn.split_size == 16 and block.attn.num_heads == 2
        assert block.attn.c_proj.weight.shape == (16, 32)
        assert block.mlp.c_fc.nf == 64
    assert pruned(**ids()).logits.shape == (2, 7, 50)


def llama(transformers: Any) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=16,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


def test_llama_grouped_query_heads_stay_consistent(transformers: Any) -> None:
    result = heads_and_mlp(llama(transformers), ["*.self_attn.q_proj", "*.mlp.gate_proj"])
    groups = [g for g in result.groups if g.layer.endswith("q_proj")]
    assert [g.n_units for g in groups] == [2, 2]  # a unit: one kv head and its 2 query heads
    pruned: Any = result.model
    for layer in pruned.model.layers:
        attention = layer.self_attn
        assert attention.q_proj.weight.shape == (16, 32)  # 2 query heads of 8
        assert attention.k_proj.weight.shape == (8, 32)  # 1 kv head
        assert attention.v_proj.weight.shape == (8, 32)
        assert attention.num_key_value_groups == 2
        assert layer.mlp.up_proj.weight.shape == (32, 32)
    assert pruned.config.num_attention_heads == 2 and pruned.config.num_key_value_heads == 1


def test_llama_save_load_round_trip(transformers: Any, tmp_path: Path) -> None:
    result = heads_and_mlp(llama(transformers), ["*.self_attn.q_proj", "*.mlp.gate_proj"])
    io.save(result.model, tmp_path / "m", plan=result.plan.to_json())
    loaded = io.load(tmp_path / "m", llama(transformers), rebuild_hook=rebuild_hook).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**ids()).logits, result.model(**ids()).logits)


def test_residual_width_is_pruned_and_verified_on_the_kept_units(transformers: Any) -> None:
    result = prunekit.prune(
        llama(transformers), ids(), sparsity=0.25, granularity="channel", scope="layer"
    )
    assert isinstance(result, PruneResult) and result.verification is not None
    # RMSNorm over it: checked against the kept-units reference
    assert result.verification.verified_kept_reference == ("model.embed_tokens",)
    assert result.verification.complete


def test_llama_residual_width_updates_hidden_size_for_from_pretrained(
    transformers: Any, tmp_path: Path
) -> None:
    result = prunekit.prune(
        llama(transformers), ids(), sparsity=0.5, granularity="channel", scope="layer"
    )
    assert isinstance(result, PruneResult)
    pruned: Any = result.model
    assert pruned.config.hidden_size == pruned.model.embed_tokens.weight.shape[1] == 16
    pruned.save_pretrained(tmp_path)
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**ids()).logits, pruned(**ids()).logits, atol=1e-6)


def test_bert_hidden_size_keeps_its_value_when_head_sizes_derive_from_it(
    transformers: Any,
) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=16,
    )  # fmt: skip
    result = prunekit.prune(
        transformers.BertModel(config).eval(), ids(), sparsity=0.5, granularity="channel",
        scope="layer",
    )  # fmt: skip
    assert isinstance(result, PruneResult)
    assert result.model.config.hidden_size == 32  # head size = hidden / heads: cannot describe


def test_multihead_attention_loses_whole_heads() -> None:
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True).eval()
    result = prunekit.prune(
        layer, torch.randn(2, 5, 8), sparsity=0.5, granularity="channel", scope="layer"
    )
    assert isinstance(result, PruneResult)
    pruned: Any = result.model  # nn.MultiheadAttention became its head-prunable replacement
    assert pruned.self_attn.num_heads == 1 and pruned.self_attn.q_proj.out_features == 4
    assert pruned.linear1.out_features == 8  # its feed-forward width is pruned


def test_timm_vit_heads_update_num_heads() -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()  # timm imports torchvision
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer

    assert timm is not None
    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=4, num_classes=5
    ).eval()
    result = prunekit.prune(
        model, torch.randn(1, 3, 16, 16), sparsity=0.5, granularity="channel", scope="layer",
        include=["*.attn.qkv", "*.mlp.fc1"],
    )  # fmt: skip
    assert isinstance(result, PruneResult)
    assert result.verification is not None and result.verification.complete
    pruned: Any = result.model
    attention = pruned.blocks[0].attn
    assert attention.num_heads == 2 and attention.qkv.out_features == 48
