"""Atomic, checksummed training checkpoints bound to the configuration that wrote them.

A checkpoint is one file: a header line, the SHA-256 of the payload, then the payload, a
``torch.save`` of a dict of tensors and plain values. It is written beside its final name and
moved into place with ``os.replace`` (see :mod:`prunekit.io.atomic`), so a job killed at any
moment leaves the previous checkpoint or the new one, never a torn file; concurrent writers each
stage their own temporary file and the last complete one wins. Reading checks the digest first
(a flipped byte is refused, not loaded as wrong numbers) and unpickles nothing but tensors and
plain containers (``torch.load(weights_only=True)``).

The payload may carry a description of the settings it depends on (:mod:`prunekit.io.fingerprint`);
:func:`load_checkpoint` with ``config=`` refuses a checkpoint whose recorded settings differ,
naming every changed field.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.errors import ConfigError, SaveFileError
from prunekit.io.atomic import fsync_directory, fsync_file, staged
from prunekit.io.fingerprint import Description, changed_fields

MAGIC = b"prunekit-checkpoint 1\n"
"""First line of every checkpoint file; the next line is ``sha256 <hex digest of the payload>``."""
CONFIG_KEY = "__config__"
"""Key of the recorded settings description in a checkpoint's payload."""
_DIGEST_LINE = len(b"sha256 ") + 64 + 1


def save_checkpoint(
    path: str | Path, state: Mapping[str, Any], *, config: Description | None = None
) -> None:
    """Write ``state`` (and the settings description ``config``) to ``path`` atomically.

    The directory is created if needed. ``state`` must not use the key ``"__config__"``.
    """
    if CONFIG_KEY in state:
        raise ConfigError(f"checkpoint state must not use the reserved key {CONFIG_KEY!r}")
    payload = dict(state)
    if config is not None:
        payload[CONFIG_KEY] = dict(config)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with staged(final) as temp:
        with temp.open("wb") as handle:
            handle.write(MAGIC)
            handle.write(b"sha256 " + hashlib.sha256(data).hexdigest().encode("ascii") + b"\n")
            handle.write(data)
        fsync_file(temp)
        os.replace(temp, final)
    fsync_directory(final.parent)


def _payload(raw: bytes, where: str) -> bytes:
    if not raw.startswith(MAGIC):
        raise SaveFileError(
            f"{where}: not a prunekit checkpoint (no {MAGIC.strip().decode()!r} header); "
            "it was written by another tool or an older prunekit"
        )
    line = raw[len(MAGIC) : len(MAGIC) + _DIGEST_LINE]
    if not (line.startswith(b"sha256 ") and line.endswith(b"\n")):
        raise SaveFileError(f"{where}: checkpoint header is damaged (no sha256 line)")
    recorded = line[len(b"sha256 ") : -1].decode("ascii", errors="replace")
    payload = raw[len(MAGIC) + _DIGEST_LINE :]
    digest = hashlib.sha256(payload).hexdigest()
    if digest != recorded:
        raise SaveFileError(
            f"{where}: sha256 of the checkpoint is {digest}, its header records {recorded}; "
            "the file is corrupt or truncated"
        )
    return payload


def load_checkpoint(path: str | Path, *, config: Description | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, after checking its digest.

    With ``config`` (a description of the current settings), a checkpoint that recorded other
    settings, or none, is refused with a :class:`ConfigError` naming the changed fields.
    The returned dict does not hold the recorded settings.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise SaveFileError(f"{where}: cannot read checkpoint: {err}") from err
    try:
        state = torch.load(io.BytesIO(_payload(raw, where)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = next((ln for ln in str(err).splitlines() if "Unpickler error" in ln), str(err))
        raise SaveFileError(
            f"{where}: cannot read checkpoint: it holds objects other than tensors and plain "
            f"values, which are not unpickled ({reason.strip()})"
        ) from err
    except (RuntimeError, ValueError, EOFError) as err:
        raise SaveFileError(f"{where}: cannot read checkpoint: {err}") from err
    if not isinstance(state, dict):
        raise SaveFileError(f"{where}: checkpoint does not hold a dict")
    recorded = state.pop(CONFIG_KEY, None)
    if config is not None:
        check_config(where, recorded, config)
    return state


def check_config(where: str, recorded: Mapping[str, Any] | None, current: Description) -> None:
    """Raise a :class:`ConfigError` unless ``recorded`` equals ``current``, naming the changes."""
    if recorded is None:
        raise ConfigError(
            f"{where}: the checkpoint records no settings, so resuming it with these cannot be "
            "checked; delete it to start over"
        )
    changes = changed_fields(recorded, current)
    if changes:
        shown = "; ".join(changes[:8]) + (
            f"; and {len(changes) - 8} more" if len(changes) > 8 else ""
        )
        raise ConfigError(
            f"{where}: the checkpoint was written with other settings ({shown}); rerun with the "
            "same settings, or delete the checkpoint to start over"
        )


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
