"""Models of the structural sweep (torchvision, timm, tiny Hugging Face configs) and the one
call of each library that the sweep and the speed benchmark time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def _vision() -> Any:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    return torchvision


WIDE_TIMM = [
    "cait_xxs24_224", "pit_ti_224", "xcit_nano_12_p16_224", "levit_128s", "mobilevitv2_050",
    "efficientformer_l1", "poolformer_s12", "ghostnet_100", "mixnet_s", "rexnet_100",
    "hrnet_w18_small", "dla34", "res2net50_14w_8s", "resnest14d", "cspresnet50", "repvgg_a0",
    "mobileone_s0", "fastvit_t8", "edgenext_xx_small", "pvt_v2_b0", "crossvit_tiny_240",
    "mixer_s16_224", "resmlp_12_224", "gmlp_ti16_224", "eva02_tiny_patch14_224",
    "ese_vovnet19b_dw", "lcnet_100", "efficientvit_m0", "convnextv2_atto", "inception_next_tiny",
    "ghostnetv2_100", "tiny_vit_5m_224", "coat_tiny", "convit_tiny", "davit_tiny",
    "deit_tiny_distilled_patch16_224", "vit_relpos_small_patch16_224", "nf_resnet26",
]  # fmt: skip
"""timm models of the wide sweep (``--wide``): small variants of 38 architecture families."""

_TEXT = {
    "vocab_size": 1000,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
}
_DECODER = {**_TEXT, "num_key_value_heads": 2}
_IMAGE = {"image_size": 64, "num_channels": 3, "num_labels": 10}


def _spec(model: str, config: str, kwargs: Mapping[str, Any], **inputs: int) -> dict[str, Any]:
    return {"model": model, "config": {"model_type": config, **kwargs}, **inputs}


WIDE_HF: dict[str, dict[str, Any]] = {
    "roberta": _spec("RobertaForSequenceClassification", "RobertaConfig", _TEXT, tokens=32),
    "distilbert": _spec("DistilBertForSequenceClassification", "DistilBertConfig",
                        {"vocab_size": 1000, "dim": 64, "n_layers": 2, "n_heads": 4,
                         "hidden_dim": 128, "max_position_embeddings": 64}, tokens=32),
    "albert": _spec("AlbertForSequenceClassification", "AlbertConfig",
                    {**_TEXT, "embedding_size": 32}, tokens=32),
    "electra": _spec("ElectraForSequenceClassification", "ElectraConfig",
                     {**_TEXT, "embedding_size": 32}, tokens=32),
    "deberta": _spec("DebertaForSequenceClassification", "DebertaConfig", _TEXT, tokens=32),
    "deberta_v2": _spec("DebertaV2ForSequenceClassification", "DebertaV2Config",
                        {**_TEXT, "relative_attention": True, "position_buckets": 16,
                         "pos_att_type": ["p2c", "c2p"]}, tokens=32),
    "mobilebert": _spec("MobileBertForSequenceClassification", "MobileBertConfig",
                        {**_TEXT, "embedding_size": 32, "intra_bottleneck_size": 32,
                         "true_hidden_size": 32, "num_feedforward_networks": 2}, tokens=32),
    "mpnet": _spec("MPNetForSequenceClassification", "MPNetConfig", _TEXT, tokens=32),
    "xlm_roberta": _spec("XLMRobertaForSequenceClassification", "XLMRobertaConfig", _TEXT,
                         tokens=32),
    "t5_encoder": _spec("T5EncoderModel", "T5Config",
                        {"vocab_size": 1000, "d_model": 64, "d_kv": 16, "d_ff": 128,
                         "num_layers": 2, "num_heads": 4}, tokens=32),
    "opt": _spec("OPTForCausalLM", "OPTConfig",
                 {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "ffn_dim": 128, "max_position_embeddings": 64,
                  "word_embed_proj_dim": 64}, tokens=32),
    "gpt_neo": _spec("GPTNeoForCausalLM", "GPTNeoConfig",
                     {"vocab_size": 1000, "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                      "attention_types": [[["global", "local"], 1]], "max_position_embeddings": 64,
                      "window_size": 16}, tokens=32),
    "gptj": _spec("GPTJForCausalLM", "GPTJConfig",
                  {"vocab_size": 1000, "n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8,
                   "n_positions": 64}, tokens=32),
    "gpt_neox": _spec("GPTNeoXForCausalLM", "GPTNeoXConfig", _TEXT, tokens=32),
    "bloom": _spec("BloomForCausalLM", "BloomConfig",
                   {"vocab_size": 1000, "hidden_size": 64, "n_layer": 2, "n_head": 4}, tokens=32),
    "falcon": _spec("FalconForCausalLM", "FalconConfig",
                    {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4}, tokens=32),
    "mistral": _spec("MistralForCausalLM", "MistralConfig", _DECODER, tokens=32),
    "qwen2": _spec("Qwen2ForCausalLM", "Qwen2Config", _DECODER, tokens=32),
    "qwen3": _spec("Qwen3ForCausalLM", "Qwen3Config", {**_DECODER, "head_dim": 16}, tokens=32),
    "phi": _spec("PhiForCausalLM", "PhiConfig", _TEXT, tokens=32),
    "phi3": _spec("Phi3ForCausalLM", "Phi3Config",
                  {**_DECODER, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1},
                  tokens=32),
    "gemma": _spec("GemmaForCausalLM", "GemmaConfig", {**_DECODER, "head_dim": 16}, tokens=32),
    "gemma2": _spec("Gemma2ForCausalLM", "Gemma2Config", {**_DECODER, "head_dim": 16},
                    tokens=32),
    "stablelm": _spec("StableLmForCausalLM", "StableLmConfig", _DECODER, tokens=32),
    "olmo": _spec("OlmoForCausalLM", "OlmoConfig", _DECODER, tokens=32),
    "mixtral": _spec("MixtralForCausalLM", "MixtralConfig",
                     {**_DECODER, "num_local_experts": 4, "num_experts_per_tok": 2}, tokens=32),
    "swin": _spec("SwinForImageClassification", "SwinConfig",
                  {**_IMAGE, "patch_size": 4, "embed_dim": 32, "depths": [1, 1],
                   "num_heads": [2, 4], "window_size": 4}, image=64),
    "convnext": _spec("ConvNextForImageClassification", "ConvNextConfig",
                      {"num_labels": 10, "num_stages": 2, "hidden_sizes": [16, 32],
                       "depths": [1, 1]}, image=64),
    "resnet": _spec("ResNetForImageClassification", "ResNetConfig",
                    {"num_labels": 10, "embedding_size": 16, "hidden_sizes": [16, 32],
                     "depths": [1, 1]}, image=64),
    "deit": _spec("DeiTForImageClassification", "DeiTConfig",
                  {**_IMAGE, **_TEXT, "patch_size": 8}, image=64),
    "beit": _spec("BeitForImageClassification", "BeitConfig",
                  {**_IMAGE, **_TEXT, "patch_size": 8, "use_relative_position_bias": True},
                  image=64),
    "mobilevit": _spec("MobileViTForImageClassification", "MobileViTConfig",
                       {"image_size": 64, "num_labels": 10, "hidden_sizes": [32, 40, 48],
                        "neck_hidden_sizes": [8, 8, 16, 24, 32, 40, 64]}, image=64),
    "clip_vision": _spec("CLIPVisionModel", "CLIPVisionConfig",
                         {"image_size": 64, "patch_size": 8, "hidden_size": 64,
                          "num_hidden_layers": 2, "num_attention_heads": 4,
                          "intermediate_size": 128}, image=64),
    "dinov2": _spec("Dinov2Model", "Dinov2Config",
                    {"image_size": 64, "patch_size": 8, "hidden_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 2}, image=64),
    "segformer": _spec("SegformerForImageClassification", "SegformerConfig",
                       {"num_labels": 10, "hidden_sizes": [16, 32, 48, 64],
                        "decoder_hidden_size": 64}, image=64),
}  # fmt: skip
"""Tiny Hugging Face configs of the wide sweep (``--wide``): 35 architectures."""


def model_names(config: Mapping[str, Any]) -> list[str]:
    if config.get("wide"):
        return [f"hf:{n}" for n in WIDE_HF] + [f"timm:{n}" for n in WIDE_TIMM]
    names = [f"hf:{n}" for n in config.get("hf") or {}]
    names += [f"timm:{n}" for n in config.get("timm") or []]
    tv = config.get("torchvision") or []
    if tv == "all":
        tv = sorted(_vision().models.list_models(module=_vision().models))
    return names + [f"torchvision:{n}" for n in tv]


def build(name: str, config: Mapping[str, Any]) -> tuple[nn.Module, Any, list[str]]:
    """The model (eval mode, seeded), its example inputs and the names of its output layers."""
    torch.manual_seed(0)
    source, _, key = name.partition(":")
    if source == "torchvision":
        size = 299 if key == "inception_v3" else 224
        kwargs = {"aux_logits": False, "init_weights": False} if key == "inception_v3" else {}
        if key == "googlenet":
            kwargs = {"aux_logits": False, "init_weights": False}
        model = _vision().models.get_model(key, weights=None, **kwargs).eval()
        return model, torch.randn(1, 3, size, size), []
    if source == "timm":
        _vision()
        import timm

        model = timm.create_model(key, pretrained=False).eval()
        cfg: Any = model.pretrained_cfg
        size = cfg.get("input_size", (3, 224, 224))
        return model, torch.randn(1, *size), []
    _vision()
    import transformers

    spec = dict((config.get("hf") or {}).get(key) or WIDE_HF[key])
    cfg_kwargs = dict(spec["config"])
    cfg = getattr(transformers, cfg_kwargs.pop("model_type"))(**cfg_kwargs)
    model = getattr(transformers, spec["model"])(cfg).eval()
    if "image" in spec:
        inputs: Any = {"pixel_values": torch.randn(1, 3, spec["image"], spec["image"])}
    else:
        inputs = {"input_ids": torch.randint(0, cfg.vocab_size, (1, spec["tokens"]))}
    return model, inputs, []


def redraw_zero_weights(model: nn.Module) -> list[str]:
    """Re-draw every all-zero weight matrix (std 0.02): a zero-initialised classifier (torchvision
    ViT's head with ``weights=None``) makes every output 0, and verification then proves nothing."""
    names = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and param.is_floating_point() and not bool(param.any()):
                param.normal_(0.0, 0.02)
                names.append(name)
    return names


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_leaves(out: Any) -> list[torch.Tensor]:
    from torch.utils import _pytree as pytree

    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def call(model: nn.Module, inputs: Any) -> Any:
    with torch.no_grad():
        return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


# --- one model ----------------------------------------------------------------------------------


def final_layers(model: nn.Module, inputs: Any) -> list[nn.Module]:
    """Layers whose outputs are model outputs (Torch-Pruning must be told to keep them)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    ignored: list[nn.Module] = list(layers[-1:])
    for attr in ("lm_head", "classifier", "head", "fc"):
        m = getattr(model, attr, None)
        if isinstance(m, nn.Module):
            ignored += [x for x in m.modules() if isinstance(x, (nn.Linear, nn.Conv2d))]
    return ignored


def prunekit_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``prunekit.prune`` keywords at the sweep's settings (no verification, no metrics)."""
    return {
        "sparsity": config["sparsity"],
        "granularity": "channel",
        "estimator": config["estimator"],
        "scope": config["scope"],
        "verify": False,
        "metrics": False,
        "recalibrate": False,  # no data here; Torch-Pruning does not recalibrate either
    }


def torch_pruning_prune(target: nn.Module, inputs: Any, config: Mapping[str, Any]) -> None:
    """Torch-Pruning's L1 ``MagnitudePruner`` at the sweep's ratio, in place on ``target``."""
    import torch_pruning as tp

    tp.pruner.MagnitudePruner(
        target, inputs, importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=config["sparsity"], ignored_layers=final_layers(target, inputs),
        output_transform=lambda out: output_leaves(out)[0],
    ).step()  # fmt: skip
