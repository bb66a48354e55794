"""Progress of a streaming run, so that an interrupted run resumes from its last complete block.

After block ``k`` is pruned, its shard is written, then the inputs of block ``k + 1`` (the
pruned block's outputs on the calibration windows) to ``hidden-{k+1}.safetensors``, and only
then the progress file, each atomically (temporary file + rename). Whatever moment a run is
killed at, the progress file names a complete set of shards and the hidden states that go with
them; a file written after it is simply written again. The progress file records a fingerprint
of the settings, the checkpoint and the calibration windows: a resume with anything else is
refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from prunekit.errors import ConfigError, DataError
from prunekit.llm.shards import write_json, write_shard

PROGRESS_FILE = "prunekit_stream_progress.json"


def fingerprint(settings: dict[str, Any], checkpoint: str, windows: Tensor | None) -> str:
    """A hash of the run's settings, the source checkpoint and the calibration windows."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(checkpoint.encode())
    if windows is not None:
        digest.update(str(tuple(windows.shape)).encode())
        digest.update(windows.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Progress:
    """How many blocks are done, the shards written so far and each layer's sparsity; width
    pruning also keeps the surgery plan of the blocks done (``plan``, plan JSON form)."""

    fingerprint: str
    blocks_done: int = 0
    weight_map: dict[str, str] = field(default_factory=dict)
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    hidden_file: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "blocks_done": self.blocks_done,
            "weight_map": self.weight_map,
            "layer_sparsity": self.layer_sparsity,
            "hidden_file": self.hidden_file,
            "plan": self.plan,
        }


def load_progress(out_dir: Path, expected: str) -> Progress | None:
    """The progress of an earlier run in ``out_dir`` with the same fingerprint, if any."""
    path = out_dir / PROGRESS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        progress = Progress(**data)
    except (ValueError, TypeError) as err:
        raise DataError(f"progress file {str(path)!r} is unreadable ({err}); remove it") from None
    if progress.fingerprint != expected:
        raise ConfigError(
            f"output directory {str(out_dir)!r} holds an interrupted run with other settings, "
            "weights or calibration data; remove it or choose another directory"
        )
    return progress


def save_block(out_dir: Path, progress: Progress, hidden: Tensor | None, blocks_done: int) -> None:
    """Record that ``blocks_done`` blocks are complete (their shards already written), with the
    inputs of the next block; the previous hidden-state file is removed afterwards."""
    previous = progress.hidden_file
    if hidden is not None:
        name = f"prunekit_stream_hidden-{blocks_done:05d}.safetensors"
        write_shard(out_dir / name, {"hidden": hidden})
        progress.hidden_file = name
    progress.blocks_done = blocks_done
    write_json(out_dir / PROGRESS_FILE, progress.to_json())
    if previous is not None and previous != progress.hidden_file:
        (out_dir / previous).unlink(missing_ok=True)


def load_hidden(out_dir: Path, progress: Progress) -> Tensor:
    """The saved inputs of block ``progress.blocks_done``."""
    if progress.hidden_file is None or not (out_dir / progress.hidden_file).is_file():
        raise DataError(
            f"progress file in {str(out_dir)!r} names no readable hidden-state file; "
            "remove the directory and start again"
        )
    return load_file(str(out_dir / progress.hidden_file))["hidden"]


def finish(out_dir: Path, progress: Progress) -> None:
    """Remove the progress and hidden-state files of a completed run."""
    if progress.hidden_file is not None:
        (out_dir / progress.hidden_file).unlink(missing_ok=True)
    (out_dir / PROGRESS_FILE).unlink(missing_ok=True)
