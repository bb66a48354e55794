"""The registry of reference models and the name-based factory used by recipes and the CLI."""

from __future__ import annotations

import inspect
from typing import Any

from prunekit.errors import ConfigError, closest
from prunekit.models.base import ImageClassifier
from prunekit.models.lenet import LeNet5, LeNet300100
from prunekit.models.resnet import SmallResNet
from prunekit.models.vgg import SmallVGG
from prunekit.registry import Registry

MODELS: Registry[type[ImageClassifier]] = Registry("model")
MODELS.register("lenet-300-100", LeNet300100, aliases=("lenet300100", "lenet-300"))
MODELS.register("lenet-5", LeNet5, aliases=("lenet5",))
MODELS.register("small-vgg", SmallVGG, aliases=("vgg",))
MODELS.register("small-resnet", SmallResNet, aliases=("resnet-8", "resnet8"))


def model_args(name: str) -> dict[str, Any]:
    """The constructor arguments of model ``name`` and their defaults."""
    signature = inspect.signature(MODELS.get(name).__init__)
    return {
        arg: param.default
        for arg, param in signature.parameters.items()
        if arg != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    }


def build_model(name: str, **kwargs: Any) -> ImageClassifier:
    """Build the reference model registered as ``name`` (see :data:`MODELS`) with ``kwargs``.

    Arguments are checked against the model's signature before anything is built: an unknown
    one raises :class:`ConfigError` naming the model and listing the arguments it takes.
    """
    cls = MODELS.get(name)
    valid = model_args(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        hint = closest(unknown[0], valid)
        raise ConfigError(
            f"model {MODELS.canonical(name)!r} got unknown argument(s) {', '.join(unknown)}{hint}; "
            f"valid arguments: {', '.join(valid)}"
        )
    return cls(**kwargs)
