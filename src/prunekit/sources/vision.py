"""Builders for ``torchvision:NAME`` and ``timm:NAME`` specs, always without pretrained weights
(nothing is downloaded; pass ``weights=`` to load a file)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.errors import closest
from prunekit.sources.base import Built, SourceError, one_line
from prunekit.sources.transforms import imagenet_eval_transform, timm_transform


def build_torchvision(name: str, kwargs: Mapping[str, Any]) -> Built:
    """``torchvision.models.get_model(name, weights=None, **kwargs)`` with its eval transform.

    The crop and resize sizes come from the model's published weights (299/342 for
    inception_v3, 224/256 for most), so the input shape matches what the model was trained on.
    """
    spec = f"torchvision:{name}"
    _refuse(spec, kwargs, "weights")
    ensure_torchvision_ops()
    from torchvision import models

    known = models.list_models()
    if name not in known:
        raise SourceError(
            f"unknown torchvision model {name!r}{closest(name, known)}; "
            f"{len(known)} known, e.g. resnet18, mobilenet_v3_small, vit_b_16"
        )
    model = _create(spec, lambda: models.get_model(name, weights=None, **kwargs))
    if not _is_image_model(name):
        return Built(model=model, spec=spec)
    resize, crop = _eval_sizes(name)
    crop = int(kwargs.get("image_size", crop))
    resize = max(resize, crop)
    return Built(
        model=model,
        spec=spec,
        input_shape=(1, 3, crop, crop),
        image_transform=imagenet_eval_transform(resize, crop),
    )


def build_timm(name: str, kwargs: Mapping[str, Any]) -> Built:
    """``timm.create_model(name, pretrained=False, **kwargs)`` with timm's eval transform."""
    spec = f"timm:{name}"
    _refuse(spec, kwargs, "pretrained")
    ensure_torchvision_ops()
    import timm

    if not timm.is_model(name):
        known = timm.list_models()
        raise SourceError(
            f"unknown timm model {name!r}{closest(name, known)}; "
            f"{len(known)} known (timm.list_models())"
        )
    model = _create(spec, lambda: timm.create_model(name, pretrained=False, **kwargs))
    size = getattr(model, "pretrained_cfg", {}).get("input_size")
    return Built(
        model=model,
        spec=spec,
        input_shape=(1, *(int(v) for v in size)) if size else None,
        image_transform=timm_transform(model),
    )


def _refuse(spec: str, kwargs: Mapping[str, Any], key: str) -> None:
    if key in kwargs:
        raise SourceError(
            f"{spec}: kwargs may not set {key!r}; nothing is downloaded, "
            "pass a weights file with weights= instead"
        )


def _is_image_model(name: str) -> bool:
    """Whether ``name`` is a classification or segmentation model (one image batch in)."""
    from torchvision import models

    return name in models.list_models(module=models) or name in models.list_models(
        module=models.segmentation
    )


def _eval_sizes(name: str) -> tuple[int, int]:
    """``(resize, crop)`` of the first published classification weights of ``name``, else
    ``(256, 224)``."""
    from torchvision import models

    try:
        weights = list(models.get_model_weights(name))
    except (ValueError, KeyError):
        return 256, 224
    keywords = getattr(weights[0].transforms, "keywords", {}) if weights else {}
    if "crop_size" not in keywords:  # segmentation weights resize only (to 520): keep the default
        return 256, 224
    crop = int(keywords["crop_size"])
    return int(keywords.get("resize_size", 256)), crop


def _create(spec: str, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()``, with whatever the library raises turned into one :class:`SourceError` line."""
    try:
        return build()
    except Exception as error:
        raise SourceError(f"{spec} raised {one_line(error)}") from error
