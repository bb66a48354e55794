"""The block-by-block loop both streaming pruners run.

:func:`prunekit.llm.streaming.prune_streaming` (unstructured / N:M) and
:func:`prunekit.llm.stream_width.prune_width_streaming` (heads and MLP neurons) differ only in
what they do to one block. Everything around it is here: opening the source directory as a
model on the meta device (:func:`open_source`), opening or resuming the output directory and
copying the tensors outside the blocks (:func:`open_run`), capturing block 0's calibration
inputs from the embeddings and walking the blocks with a progress bar (:func:`run_blocks`), and
writing the index and the side files at the end (:func:`close_run`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.errors import ConfigError
from prunekit.llm.blocks import BlockInputs, BlockStack, capture_block_inputs, find_blocks
from prunekit.llm.calibration import TextSource
from prunekit.llm.shards import ShardedCheckpoint, write_index
from prunekit.llm.stream_output import (
    BlockCallback,
    copy_side_files,
    embedding_names,
    open_output,
    outside_groups,
    shard_name,
    stream_windows,
    write_outside,
)
from prunekit.llm.stream_progress import Progress, fingerprint, finish, load_hidden
from prunekit.llm.stream_skeleton import build_skeleton, check_coverage, materialise, release_named

BlockStep = Callable[[int, BlockInputs | None], None]
"""What a pruner does to block ``index`` (given the calibration inputs, if any)."""


@dataclass(frozen=True)
class StreamSource:
    """The model to prune: its shards, its skeleton (meta tensors) and its blocks."""

    model_dir: Path
    checkpoint: ShardedCheckpoint
    model: nn.Module
    hf_config: Any
    where: Mapping[str, str]
    stack: BlockStack

    @property
    def block_prefix(self) -> str:
        return self.stack.prefix + "."

    def windows(
        self, calibration: Tensor | TextSource | None, *, n_samples: int, seq_len: int, seed: int
    ) -> Tensor:
        """The calibration windows (token ids), tokenised with the model directory's tokenizer
        when ``calibration`` is text (:func:`~prunekit.llm.stream_output.stream_windows`)."""
        vocab = int(self.hf_config.vocab_size)
        return stream_windows(
            calibration, self.model_dir, vocab, n_samples=n_samples, seq_len=seq_len, seed=seed
        )


@dataclass
class StreamRun:
    """An output directory being written: the progress so far and the shard numbering (the
    tensors outside the blocks take the first shards, then one shard per block)."""

    out_dir: Path
    state: Progress
    first_block_shard: int
    total_shards: int

    def block_shard(self, index: int) -> str:
        """The file name of block ``index``'s shard."""
        return shard_name(self.first_block_shard + index, self.total_shards)


def open_source(model_dir: str | Path, out_dir: str | Path, dtype: torch.dtype) -> StreamSource:
    """The model in ``model_dir`` on the meta device, every parameter found in its shards with
    its shape; refuses writing over the model itself."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    checkpoint = ShardedCheckpoint(model_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise ConfigError(f"output directory {str(out_dir)!r} is the model directory")
    model, hf_config = build_skeleton(model_dir, dtype)
    where = check_coverage(model, checkpoint)
    return StreamSource(model_dir, checkpoint, model, hf_config, where, find_blocks(model))


def open_run(
    source: StreamSource, out_dir: str | Path, settings: dict[str, Any], windows: Tensor | None
) -> StreamRun:
    """The run in ``out_dir`` with these settings and calibration windows: resumed where it
    stopped, or started (the tensors outside the blocks copied unchanged)."""
    out_dir = Path(out_dir)
    key = fingerprint(settings, source.checkpoint.fingerprint(), windows)
    state = open_output(out_dir, key)
    outside = outside_groups(source.checkpoint, source.block_prefix)
    total = len(outside) + len(source.stack)
    if state.blocks_done == 0:
        state.weight_map.update(write_outside(out_dir, source.checkpoint, outside, total))
    return StreamRun(out_dir, state, len(outside) + 1, total)


def run_blocks(
    source: StreamSource,
    run: StreamRun,
    windows: Tensor | None,
    step: BlockStep,
    *,
    dtype: torch.dtype,
    desc: str,
    progress: bool = True,
    on_block: BlockCallback | None = None,
) -> int:
    """Run ``step`` on every block not done yet, in order; returns the block resumed from.

    With ``windows``, block 0's inputs are computed from the embeddings (filled, used, then
    dropped again), or a resumed run's saved activations replace them."""
    resumed_from = run.state.blocks_done
    model = source.model
    with torch.no_grad():
        inputs = None
        if windows is not None:
            needed = embedding_names(model, source.where, source.block_prefix)
            materialise(model, source.checkpoint.load(sorted(set(needed.values())), dtype))
            materialise(model, {n: model.get_parameter(s) for n, s in needed.items() if n != s})
            inputs = capture_block_inputs(model, source.stack, windows)
            if resumed_from:
                inputs.hidden = load_hidden(run.out_dir, run.state).to(dtype)
            release_named(model, needed)
        blocks = range(resumed_from, len(source.stack))
        for index in tqdm(blocks, desc=desc, unit="block", disable=not progress):
            step(index, inputs)
            if on_block is not None:
                on_block(index)
    return resumed_from


def close_run(
    source: StreamSource, run: StreamRun, write_extra: Callable[[Path], None] | None = None
) -> None:
    """Write the shard index and the source's side files (config, tokenizer), then
    ``write_extra(out_dir)`` (files that replace or join them), then mark the run finished."""
    write_index(run.out_dir, run.state.weight_map)
    copy_side_files(source.model_dir, run.out_dir)
    if write_extra is not None:
        write_extra(run.out_dir)
    finish(run.out_dir, run.state)
