"""``load_model(spec)``: build the user's model from one spec string.

=========================  ==============================================================
spec                       builds
=========================  ==============================================================
``lenet-5``                a prunekit reference model (:data:`prunekit.models.MODELS`)
``torchvision:resnet50``   ``torchvision.models.get_model(name, weights=None, **kwargs)``
``timm:convnext_tiny``     ``timm.create_model(name, pretrained=False, **kwargs)``
``hf:path/to/dir``         a local Hugging Face directory, head from ``config.architectures``
``path/to/file.py:make``   ``make(**kwargs)`` from a Python file imported by path
``package.module:make``    ``make(**kwargs)`` from an importable module
=========================  ==============================================================

``weights=`` then loads a file strictly (see :mod:`prunekit.sources.weights`). Nothing is ever
downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunekit.errors import closest
from prunekit.sources.base import Built, ModelSource, SourceError
from prunekit.sources.factories import build_file, build_module, build_prunekit, module_exists
from prunekit.sources.hf import build_hf
from prunekit.sources.vision import build_timm, build_torchvision
from prunekit.sources.weights import load_weights

#: Spec prefixes (``PREFIX:NAME``) and what they build, for ``prunekit list``.
MODEL_FAMILIES: dict[str, str] = {
    "prunekit": "prunekit's reference models by name: lenet-300-100, lenet-5, small-vgg, ...",
    "torchvision": "torchvision:NAME, e.g. torchvision:resnet18 (random init; weights= to load)",
    "timm": "timm:NAME, e.g. timm:convnext_tiny (random init; weights= to load)",
    "hf": "hf:DIR, a local Hugging Face model directory (config.json + weights, tokenizer)",
    "FILE.py:FACTORY": "a Python file imported by path; FACTORY(**kwargs) returns the nn.Module",
    "MODULE:FACTORY": "an importable module, e.g. mypkg.models:build; FACTORY(**kwargs)",
}
_PREFIXES = ("prunekit", "torchvision", "timm", "hf")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def model_families() -> list[tuple[str, str]]:
    """``(prefix, description)`` of every spec form, for ``prunekit list``."""
    return list(MODEL_FAMILIES.items())


def load_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> ModelSource:
    """Build the model named by ``spec`` (see the module docstring) with ``kwargs``, load
    ``weights`` into it if given, and return it in eval mode with its input shape, image
    transform and tokenizer.

    ``kwargs`` must be JSON values so that ``rebuild_spec`` can be saved and rebuilt. Every
    failure is a one-line :class:`SourceError`.
    """
    options = _check_kwargs(spec, kwargs)
    family, target = parse_model_spec(spec)
    built = _build(family, target, options, from_weights_file=weights is not None)
    if weights is not None:
        load_weights(built.model, weights)
    built.model.eval()
    return ModelSource(
        model=built.model,
        spec=built.spec,
        family="python" if family in ("file", "module") else family,
        input_shape=built.input_shape,
        image_transform=built.image_transform,
        tokenizer=built.tokenizer,
        rebuild_spec={"source": built.spec, "kwargs": options},
    )


def rebuild_model(
    rebuild_spec: Mapping[str, Any], *, weights: str | Path | None = None
) -> ModelSource:
    """Build the model a :attr:`ModelSource.rebuild_spec` describes (read back from JSON)."""
    if not isinstance(rebuild_spec, Mapping) or not isinstance(rebuild_spec.get("source"), str):
        raise SourceError(
            f"a rebuild spec is {{'source': SPEC, 'kwargs': {{...}}}}, got {rebuild_spec!r}"
        )
    return load_model(rebuild_spec["source"], weights=weights, kwargs=rebuild_spec.get("kwargs"))


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``(family, target)`` of a spec; family is one of :data:`_PREFIXES`, ``"file"`` (target
    ``PATH:FACTORY``) or ``"module"`` (target ``MODULE:FACTORY``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"a model spec must be a non-empty string, got {spec!r}")
    text = spec.strip()
    if ":" not in text:
        return "prunekit", _bare(text)
    prefix, _, rest = text.partition(":")
    if prefix.lower() in _PREFIXES:
        if not rest.strip():
            raise SourceError(f"model spec {spec!r} names no model after {prefix.lower()}:")
        return prefix.lower(), rest.strip()
    left, _, factory = text.rpartition(":")
    if not _DOTTED.fullmatch(factory):
        raise SourceError(f"model spec {spec!r}: {factory!r} is not a factory name")
    if left.endswith(".py") or "/" in left or "\\" in left:
        return "file", f"{left}:{factory}"
    if _DOTTED.fullmatch(left) and module_exists(left):
        return "module", f"{left}:{factory}"
    raise SourceError(
        f"unknown model spec prefix {prefix!r} in {spec!r}{closest(prefix.lower(), _PREFIXES)}; "
        f"known: {', '.join(p + ':' for p in _PREFIXES)}, FILE.py:FACTORY, MODULE:FACTORY "
        f"(no module named {left!r})"
    )


def _bare(name: str) -> str:
    if name.endswith(".py"):
        raise SourceError(
            f"model spec {name!r} names a file but no factory: write '{name}:FACTORY'"
        )
    if (Path(name) / "config.json").is_file():
        raise SourceError(f"model spec {name!r} is a Hugging Face directory: write 'hf:{name}'")
    return name


def _build(
    family: str, target: str, kwargs: Mapping[str, Any], *, from_weights_file: bool
) -> Built:
    if family == "prunekit":
        return build_prunekit(target, kwargs)
    if family == "torchvision":
        return build_torchvision(target, kwargs)
    if family == "timm":
        return build_timm(target, kwargs)
    if family == "hf":
        return build_hf(target, kwargs, load_weights=not from_weights_file)
    path, _, factory = target.rpartition(":")
    if family == "file":
        return build_file(path, factory, kwargs)
    return build_module(path, factory, kwargs)


def _check_kwargs(spec: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise SourceError(f"kwargs for {spec!r} must be a mapping of names, got {kwargs!r}")
    options = dict(kwargs)
    try:
        json.dumps(options)
    except (TypeError, ValueError) as error:
        raise SourceError(
            f"kwargs for {spec!r} must be JSON values (numbers, strings, lists, dicts) so the "
            f"model can be rebuilt from a save: {error}"
        ) from error
    return options
