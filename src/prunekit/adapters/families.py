"""The model families prunekit knows: PyTorch and torchvision built-ins, timm, and the Hugging
Face transformers families (GPT-2, BERT / RoBERTa / ViT, LLaMA / Mistral / Qwen2, OPT, GPT-NeoX).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from prunekit.adapters.base import FixedWidth, ModelFamily, ModuleFacts, heads


def _conv1d(module: Any) -> dict[str, int]:
    """``transformers.pytorch_utils.Conv1D``: weight ``[nx, nf]``."""
    w = module.weight
    return {"nx": int(w.shape[0]), "nf": int(w.shape[1])}


def _gpt2_attention(module: Any) -> dict[str, int]:
    """GPT-2: ``c_attn`` projects to ``[q | k | v]``, split by ``split_size``."""
    width = int(module.c_attn.weight.shape[1]) // 3
    return {"split_size": width, "num_heads": heads(width, int(module.head_dim))}


def _gpt2_config(module: Any) -> dict[str, int]:
    return {"n_head": int(module.num_heads)}


def _bert_attention(module: Any) -> dict[str, int]:
    """BERT / ViT-style self-attention: ``query`` / ``key`` / ``value`` Linears."""
    width = int(module.query.weight.shape[0])
    return {
        "num_attention_heads": heads(width, int(module.attention_head_size)),
        "all_head_size": width,
    }


def _bert_config(module: Any) -> dict[str, int]:
    return {"num_attention_heads": int(module.num_attention_heads)}


def _llama_attention(module: Any) -> dict[str, int]:
    """LLaMA-style attention (``q_proj`` / ``k_proj``): heads follow the projections;
    ``num_key_value_groups`` stays (whole key/value groups are removed). Recent transformers
    keep no head counts on the module, older ones do; only those present are set."""
    values = {}
    for attr, proj in (("num_heads", "q_proj"), ("num_key_value_heads", "k_proj")):
        if attr in module.__dict__:
            width = int(getattr(module, proj).weight.shape[0])
            values[attr] = heads(width, int(module.head_dim))
    return values


def _llama_config(module: Any) -> dict[str, int]:
    head_dim = int(module.head_dim)
    return {
        "num_attention_heads": heads(int(module.q_proj.weight.shape[0]), head_dim),
        "num_key_value_heads": heads(int(module.k_proj.weight.shape[0]), head_dim),
    }


def _timm_attention(module: Any) -> dict[str, int]:
    """timm ``Attention`` (ViT, DeiT): fused ``qkv``, ``num_heads`` and ``attn_dim`` attributes.
    Other timm classes named ``Attention`` (LeViT, EfficientFormer, TinyViT) lay out their
    projections differently: no facts for them, so their widths stay as traced and verified."""
    weight = getattr(getattr(module, "qkv", None), "weight", None)
    head_dim = getattr(module, "head_dim", None)
    if not isinstance(weight, Tensor) or not isinstance(head_dim, int):
        return {}
    if "num_heads" not in module.__dict__:
        return {}
    width = int(weight.shape[0]) // 3
    values = {"num_heads": heads(width, head_dim)}
    if "attn_dim" in module.__dict__:
        values["attn_dim"] = width
    return values


TORCH = ModelFamily(
    "torch",
    "PyTorch built-ins: nn.MultiheadAttention (q/k/v rows fixed unless converted), BatchNorm",
)
TORCHVISION = ModelFamily(
    "torchvision",
    "torchvision models; MaxViT's relative-position attention keeps its q/k/v width",
    fixed_widths=(
        FixedWidth(
            "torchvision.models.maxvit.RelativePositionalMultiHeadAttention", ("to_qkv.weight",)
        ),
    ),
)
TIMM = ModelFamily(
    "timm",
    "timm ViT / DeiT: fused qkv Attention with num_heads and attn_dim",
    modules=(ModuleFacts(("Attention",), package="timm", attention=True, widths=_timm_attention),),
)
LLAMA = ModelFamily(
    "llama",
    "LLaMA, Mistral, Qwen2, SmolLM: q/k/v/o projections, grouped key/value heads",
    modules=(
        ModuleFacts(
            ("LlamaAttention", "MistralAttention", "Qwen2Attention"),
            attention=True,
            widths=_llama_attention,
            config=_llama_config,
        ),
    ),
    block_paths=("model.layers", "layers"),
)
BERT = ModelFamily(
    "bert",
    "BERT, RoBERTa, Hugging Face ViT: query/key/value self-attention, encoder.layer blocks",
    modules=(
        ModuleFacts(
            ("BertSelfAttention", "RobertaSelfAttention", "ViTSelfAttention"),
            attention=True,
            widths=_bert_attention,
            config=_bert_config,
        ),
    ),
    block_paths=("encoder.layer", "bert.encoder.layer", "roberta.encoder.layer"),
)
OPT = ModelFamily(
    "opt", "OPT decoders: model.decoder.layers blocks", block_paths=("model.decoder.layers",)
)
GPT2 = ModelFamily(
    "gpt2",
    "GPT-2 (and Falcon's block list): fused c_attn, Conv1D layers, transformer.h blocks",
    modules=(
        ModuleFacts(
            ("GPT2Attention",), attention=True, widths=_gpt2_attention, config=_gpt2_config
        ),
        ModuleFacts(("Conv1D",), widths=_conv1d),
    ),
    block_paths=("transformer.h",),
)
GPT_NEOX = ModelFamily(
    "gpt_neox", "GPT-NeoX / Pythia: gpt_neox.layers blocks", block_paths=("gpt_neox.layers",)
)

FAMILY_ORDER: tuple[ModelFamily, ...] = (TORCH, TORCHVISION, TIMM, LLAMA, BERT, OPT, GPT2, GPT_NEOX)
"""Every family, in the order their block paths are tried."""
