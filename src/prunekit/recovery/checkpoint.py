"""Atomic training checkpoints: a dict of tensors and plain values in one file.

The file is written beside its final name and moved into place with ``os.replace`` (see
:mod:`prunekit.io.atomic`), so a job killed at any moment leaves the previous checkpoint or the
new one, never a torn file. Files are read with ``torch.load(weights_only=True)``: tensors,
numbers, strings, lists and dicts only, no arbitrary objects (no pickle code execution).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import SaveFileError
from prunekit.io.atomic import fsync_directory, fsync_file, staged


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (creating the directory)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with staged(final) as temp:
        torch.save(dict(state), temp)
        fsync_file(temp)
        os.replace(temp, final)
    fsync_directory(final.parent)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise SaveFileError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    if not isinstance(state, dict):
        raise SaveFileError(f"checkpoint {str(path)!r} does not hold a dict")
    return state


def rng_state() -> dict[str, Any]:
    """The global random states of torch (CPU and CUDA), NumPy and Python, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [int(version), list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore the random states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
