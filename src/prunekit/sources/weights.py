"""Load a weights file into a model, strictly: every tensor must be there and fit.

Accepted: a ``.safetensors`` file; a Hugging Face directory (``model.safetensors``,
``pytorch_model.bin``, or their sharded ``*.index.json``); any other file through
``torch.load(weights_only=True)``, holding a state dict or ``{"state_dict": ...}`` /
``{"model": ...}``. Nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.sources.base import SourceError, one_line

_WRAPPERS = ("state_dict", "model")
_SHOWN = 3  # mismatched tensors named per kind in an error


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Copy the tensors in ``path`` into ``model``; raise :class:`SourceError` naming the first
    missing, unexpected or wrongly shaped tensors (name, model shape, file shape) if they do
    not fit. Tensors tied to a present one (a tied ``lm_head.weight``) may be absent."""
    state = read_state_dict(path)
    check_fit(model, state, str(path))
    model.load_state_dict(state, strict=False)  # check_fit has done the strict part


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file or Hugging Face directory, by name."""
    file = Path(path).expanduser()
    if file.is_dir():
        return _read_directory(file)
    if not file.is_file():
        raise SourceError(f"weights file {str(path)!r} does not exist")
    if file.suffix == ".safetensors":
        return _read_safetensors(file)
    return _read_torch(file)


def check_fit(model: nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """Raise :class:`SourceError` unless ``state`` holds exactly ``model``'s tensors and shapes."""
    own = model.state_dict()
    tied = _tied_to_present(model, state)
    missing = [k for k in own if k not in state and k not in tied]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        shown = ", ".join(
            f"{k} (model {_shape(own[k])}, file {_shape(state[k])})" for k in wrong[:_SHOWN]
        )
        parts.append(f"{len(wrong)} shape mismatch(es): {shown}")
    if missing:
        shown = ", ".join(f"{k} {_shape(own[k])}" for k in missing[:_SHOWN])
        parts.append(f"{len(missing)} missing from the file: {shown}")
    if unexpected:
        shown = ", ".join(f"{k} {_shape(state[k])}" for k in unexpected[:_SHOWN])
        parts.append(f"{len(unexpected)} not in the model: {shown}")
    raise SourceError(f"weights {where!r} do not fit {type(model).__name__}: " + "; ".join(parts))


def _shape(tensor: Tensor) -> str:
    return "[" + ", ".join(str(v) for v in tensor.shape) + "]"


def _tied_to_present(model: nn.Module, state: Mapping[str, Tensor]) -> set[str]:
    """Model tensors that share storage with another model tensor the file does hold."""
    by_storage: dict[int, list[str]] = {}
    for name, tensor in model.state_dict().items():
        if tensor.untyped_storage().data_ptr() == 0:  # empty tensors all share address 0
            continue
        by_storage.setdefault(tensor.untyped_storage().data_ptr(), []).append(name)
    tied: set[str] = set()
    for names in by_storage.values():
        if len(names) > 1 and any(n in state for n in names):
            tied.update(n for n in names if n not in state)
    return tied


def _read_safetensors(file: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except Exception as error:
        raise SourceError(
            f"weights file {str(file)!r} is not readable safetensors: {one_line(error)}"
        ) from error


def _read_torch(file: Path) -> dict[str, Tensor]:
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SourceError(
            f"weights file {str(file)!r} cannot be read by torch.load(weights_only=True): "
            f"{one_line(error)}"
        ) from error
    return _unwrap(loaded, str(file))


def _unwrap(loaded: Any, where: str) -> dict[str, Tensor]:
    if isinstance(loaded, Mapping):
        for key in _WRAPPERS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if (
        isinstance(loaded, Mapping)
        and loaded
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items())
    ):
        return dict(loaded)
    raise SourceError(
        f"weights file {where!r} holds {type(loaded).__name__}, not a state dict of tensors "
        "(or one under 'state_dict' / 'model')"
    )


def _read_directory(directory: Path) -> dict[str, Tensor]:
    for index_name, reader in (
        ("model.safetensors.index.json", _read_safetensors),
        ("pytorch_model.bin.index.json", _read_torch),
    ):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(reader(directory / shard))
            return state
    if (directory / "model.safetensors").is_file():
        return _read_safetensors(directory / "model.safetensors")
    if (directory / "pytorch_model.bin").is_file():
        return _read_torch(directory / "pytorch_model.bin")
    raise SourceError(
        f"weights directory {str(directory)!r} holds no model.safetensors or pytorch_model.bin"
    )
