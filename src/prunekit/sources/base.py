"""What every model source hands back, and the one error every source raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunekit.errors import ConfigError


class SourceError(ConfigError):
    """A model or data spec cannot be resolved: unknown prefix or name, missing file, a factory
    that fails, weights that do not fit, data that is empty or malformed."""


@dataclass(frozen=True)
class ModelSource:
    """A model built from a spec string, with what the rest of prunekit needs to feed it.

    Attributes:
        model: the module, in eval mode.
        spec: the normalised spec (canonical name, absolute paths) that rebuilds it.
        family: ``"prunekit"``, ``"torchvision"``, ``"timm"``, ``"hf"`` or ``"python"``.
        input_shape: the shape of one example input with batch 1, e.g. ``(1, 3, 224, 224)``;
            ``None`` when the model does not say (Hugging Face text models, most factories).
        image_transform: preprocessing of one PIL image for image-folder data, or ``None``.
        tokenizer: the Hugging Face tokenizer found beside the model, or ``None``.
        rebuild_spec: ``{"source": spec, "kwargs": {...}}``, JSON-able; ``rebuild_model`` (or
            ``load_model(d["source"], kwargs=d["kwargs"])``) builds the same architecture again.
    """

    model: nn.Module
    spec: str
    family: str
    input_shape: tuple[int, ...] | None
    image_transform: Callable[[Any], Any] | None
    tokenizer: Any | None
    rebuild_spec: dict[str, Any]


@dataclass(frozen=True)
class Built:
    """What a family's builder returns; :func:`prunekit.sources.load_model` adds spec and family."""

    model: nn.Module
    spec: str
    input_shape: tuple[int, ...] | None = None
    image_transform: Callable[[Any], Any] | None = None
    tokenizer: Any | None = None


def one_line(error: BaseException) -> str:
    """``"ValueError: message"`` with the message folded onto one line."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
