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


def model_names(config: Mapping[str, Any]) -> list[str]:
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

    spec = dict(config["hf"][key])
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
