"""Builder for ``hf:DIR`` specs: a local Hugging Face model directory, read offline.

The head class comes from ``config.architectures[0]`` (``BertForSequenceClassification``,
``LlamaForCausalLM``, ...) when transformers has it, else ``AutoModel``; kwargs override config
fields (``num_labels=3``); the tokenizer is loaded when the directory holds one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.sources.base import Built, SourceError, one_line

#: Files whose presence means the directory holds weights (single file or sharded index).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: Files whose presence means the directory holds a tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
)


def build_hf(path: str, kwargs: Mapping[str, Any], *, load_weights: bool = True) -> Built:
    """Build the model in directory ``path``; with ``load_weights=False`` (weights come from a
    separate file) the architecture is built from its config alone."""
    directory = Path(path).expanduser().resolve()
    spec = f"hf:{directory}"
    if not directory.is_dir():
        raise SourceError(f"hf:{path}: no such directory")
    if not (directory / "config.json").is_file():
        raise SourceError(f"hf:{path}: no config.json in {directory}")
    if load_weights and not has_weights(directory):
        raise SourceError(
            f"{spec}: no weights in the directory (looked for {', '.join(WEIGHT_FILES)}); "
            "pass weights= to load them from a file"
        )
    options = dict(kwargs)
    dtype = _dtype(spec, options.pop("dtype", "float32"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(
            str(directory), local_files_only=True, **options
        )
        cls = head_class(config)
        if load_weights:
            model = cls.from_pretrained(
                str(directory), config=config, dtype=dtype, local_files_only=True
            )
        elif cls is transformers.AutoModel:
            model = cls.from_config(config, dtype=dtype)
        else:
            model = cls(config).to(dtype)
    except Exception as error:
        raise SourceError(f"{spec} raised {one_line(error)}") from error
    return Built(
        model=model,
        spec=spec,
        input_shape=_image_shape(config),
        tokenizer=_tokenizer(directory, spec),
    )


def head_class(config: Any) -> Any:
    """The transformers class named by ``config.architectures[0]``, else ``AutoModel``."""
    import transformers

    architectures = getattr(config, "architectures", None) or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    return cls if cls is not None else transformers.AutoModel


def has_weights(directory: Path) -> bool:
    """Whether ``directory`` holds Hugging Face weight files."""
    return any((directory / name).is_file() for name in WEIGHT_FILES)


def _dtype(spec: str, name: Any) -> torch.dtype:
    value = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise SourceError(f"{spec}: dtype {name!r} is not a torch dtype (e.g. 'float32')")
    return value


def _image_shape(config: Any) -> tuple[int, ...] | None:
    """``(1, C, H, W)`` for vision configs (``image_size`` and ``num_channels``), else ``None``."""
    size = getattr(config, "image_size", None)
    channels = getattr(config, "num_channels", None)
    if not isinstance(channels, int):
        return None
    if isinstance(size, int):
        return (1, channels, size, size)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return (1, channels, int(size[0]), int(size[1]))
    return None


def _tokenizer(directory: Path, spec: str) -> Any | None:
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:
        raise SourceError(f"{spec}: its tokenizer raised {one_line(error)}") from error
