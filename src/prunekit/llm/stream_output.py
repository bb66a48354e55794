"""What every streaming run shares: calibration windows, the output directory, the shards of
the tensors outside the blocks, and the result record.

Used by :func:`prunekit.llm.streaming.prune_streaming` (unstructured / N:M) and
:func:`prunekit.llm.stream_width.prune_width_streaming` (heads and MLP neurons).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError
from prunekit.llm.blocks import BlockStack
from prunekit.llm.calibration import TextSource, calibration_windows
from prunekit.llm.shards import INDEX_FILE, ShardedCheckpoint, write_shard
from prunekit.llm.stream_progress import Progress, load_progress

OUTSIDE_SHARD_BYTES = 256 * 2**20
"""Shard size for the tensors outside the blocks (embeddings, head), copied unchanged."""

BlockCallback = Callable[[int], None]
"""Called with a block's index after its shard and the progress file are written."""


@dataclass(frozen=True)
class StreamResult:
    """Where the pruned model was written, each pruned layer's sparsity and the wall time.

    ``width`` is set by width pruning: the allocation, parameter counts before / after and
    whether ``from_pretrained`` loads the result (``load_pruned`` always does)."""

    out_dir: Path
    layer_sparsity: dict[str, float]
    blocks: int
    resumed_from: int
    seconds: float
    width: dict[str, Any] | None = None

    @property
    def sparsity(self) -> float:
        """Mean sparsity over the pruned layers (unweighted)."""
        values = list(self.layer_sparsity.values())
        return sum(values) / len(values) if values else 0.0


def shard_name(index: int, total: int) -> str:
    return f"model-{index:05d}-of-{total:05d}.safetensors"


def stream_windows(
    calibration: Tensor | TextSource | None,
    directory: Path,
    vocab: int,
    *,
    n_samples: int,
    seq_len: int,
    seed: int,
) -> Tensor:
    """Calibration windows from token ids or a text (tokenised with the model's tokenizer)."""
    if calibration is None:
        raise DataError(
            "this method needs calibration data: pass token windows [n, seq_len] or a text file"
        )
    if isinstance(calibration, Tensor):
        windows = calibration
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        windows = calibration_windows(
            tokenizer, calibration, n_samples=n_samples, seq_len=seq_len, seed=seed
        )
    if windows.dim() != 2 or windows.shape[0] < 1 or windows.shape[1] < 2:
        raise DataError(
            f"calibration windows must be [n >= 1, seq_len >= 2] token ids, got shape "
            f"{tuple(windows.shape)}"
        )
    if windows.is_floating_point() or int(windows.min()) < 0 or int(windows.max()) >= vocab:
        raise DataError(
            f"calibration token ids must be integers in [0, {vocab}) (the model's vocab_size)"
        )
    return windows.to(torch.long)


def copy_side_files(model_dir: Path, out_dir: Path) -> None:
    """Copy the config, generation config and tokenizer files (everything but the weights)."""
    for path in model_dir.iterdir():
        skip = path.suffix in (".safetensors", ".bin", ".gguf", ".pt", ".pth")
        if path.is_file() and not skip and path.name != INDEX_FILE:
            shutil.copy2(path, out_dir / path.name)


def block_tensors(
    stack: BlockStack, index: int, checkpoint: ShardedCheckpoint, dtype: torch.dtype
) -> dict[str, Tensor]:
    """Block ``index``'s tensors from the checkpoint, by fully qualified name, in ``dtype``."""
    prefix = stack.name(index) + "."
    names = [prefix + k for k in stack.blocks[index].state_dict()]
    return checkpoint.load(names, dtype)


def stored(tensors: Mapping[str, Tensor], checkpoint: ShardedCheckpoint) -> dict[str, Tensor]:
    """``tensors`` in the dtypes the checkpoint stores them in."""
    return {k: v.to(checkpoint.torch_dtype(k)) for k, v in tensors.items()}


def output_head(model: nn.Module) -> set[str]:
    """Names of the untied output projection's parameters: they act after the last block, so
    capturing block 0's inputs never needs them (saves the ``vocab x hidden`` matrix)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, nn.Module):
        return set()
    prefix = next(f"{name}." for name, module in model.named_modules() if module is head)
    tied = {id(p) for n, p in model.named_parameters() if not n.startswith(prefix)}
    return {f"{prefix}{n}" for n, p in head.named_parameters() if id(p) not in tied}


def open_output(out_dir: Path, key: str) -> Progress:
    """The progress of a run to resume in ``out_dir``, or a fresh one for an unused directory."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {str(out_dir)!r} is a file, not a directory")
    state = load_progress(out_dir, key) if out_dir.is_dir() else None
    if state is None:
        if out_dir.is_dir() and (out_dir / INDEX_FILE).exists():
            raise ConfigError(
                f"output directory {str(out_dir)!r} already holds a finished model; remove it "
                "or choose another directory"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        state = Progress(key)
    return state


def outside_groups(checkpoint: ShardedCheckpoint, block_prefix: str) -> list[list[str]]:
    """The tensors outside the blocks in groups of at most :data:`OUTSIDE_SHARD_BYTES` (a
    larger tensor alone), so that copying them never holds more than one group."""
    groups: list[list[str]] = [[]]
    size = 0
    for name in checkpoint.names():
        if name.startswith(block_prefix):
            continue
        nbytes = checkpoint.nbytes(name)
        if groups[-1] and size + nbytes > OUTSIDE_SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    return [g for g in groups if g]


def write_outside(
    out_dir: Path, checkpoint: ShardedCheckpoint, groups: list[list[str]], total: int
) -> dict[str, str]:
    """Copy the tensors outside the blocks unchanged, one shard per group; the weight map."""
    weight_map: dict[str, str] = {}
    for i, names in enumerate(groups, start=1):
        write_shard(out_dir / shard_name(i, total), checkpoint.load(names))
        weight_map.update(dict.fromkeys(names, shard_name(i, total)))
    return weight_map


def embedding_names(
    model: nn.Module, where: Mapping[str, str], block_prefix: str
) -> dict[str, str]:
    """The parameters needed to compute block 0's inputs (everything outside the blocks but
    the untied output head) -> the checkpoint names that hold them."""
    head = output_head(model)
    return {n: s for n, s in where.items() if not n.startswith(block_prefix) and n not in head}
