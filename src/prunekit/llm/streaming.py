"""Layer-wise pruning of an LLM too large for memory, streamed from sharded safetensors.

The same one-shot methods as :func:`prunekit.llm.prune_llm` (magnitude, Wanda — Sun et al. 2023;
SparseGPT — Frantar & Alistarh 2023; unstructured or N:M), block by block, but the model is never
loaded: it is built on the meta device from ``config.json``, the embeddings are filled to
capture the inputs of block 0, and then one block at a time is read from the shards (one tensor
at a time), pruned with :func:`prunekit.llm.sequential.prune_block` on the calibration
activations, run again to give the next block's inputs (from the *pruned* block, as in the
reference code), written as its own shard and dropped. Memory holds one block, the activations
and the embeddings. Every check (shards, architecture, layers, N:M widths, calibration data)
runs before the first shard is written; a killed run resumes from its last complete block
(:mod:`prunekit.llm.stream_progress`). The output directory loads with ``from_pretrained``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from prunekit.errors import ConfigError, DataError
from prunekit.granularity import NM
from prunekit.llm.blocks import BlockStack, advance, capture_block_inputs, find_blocks
from prunekit.llm.calibration import TextSource, calibration_windows
from prunekit.llm.methods import LLMMethod
from prunekit.llm.sequential import LLMPruneConfig, prune_block
from prunekit.llm.shards import INDEX_FILE, ShardedCheckpoint, write_index, write_shard
from prunekit.llm.stream_progress import (
    Progress,
    fingerprint,
    finish,
    load_hidden,
    load_progress,
    save_block,
)
from prunekit.llm.stream_skeleton import (
    build_skeleton,
    check_coverage,
    materialise,
    release,
    release_named,
)

OUTSIDE_SHARD_BYTES = 256 * 2**20
"""Shard size for the tensors outside the blocks (embeddings, head), copied unchanged."""

BlockCallback = Callable[[int], None]
"""Called with a block's index after its shard and the progress file are written."""


@dataclass(frozen=True)
class StreamResult:
    """Where the pruned model was written, each pruned layer's sparsity and the wall time."""

    out_dir: Path
    layer_sparsity: dict[str, float]
    blocks: int
    resumed_from: int
    seconds: float

    @property
    def sparsity(self) -> float:
        """Mean sparsity over the pruned layers (unweighted)."""
        values = list(self.layer_sparsity.values())
        return sum(values) / len(values) if values else 0.0


def _shard_name(index: int, total: int) -> str:
    return f"model-{index:05d}-of-{total:05d}.safetensors"


def _windows(
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


def _check_layers(stack: BlockStack, config: LLMPruneConfig) -> None:
    """Refuse blocks with layers that have no rule, no selected layer, or N:M that does not fit."""
    gran = config.granularity()
    selected = 0
    for index in range(len(stack)):
        for name, module, _ in stack.linears(index, config.include, config.exclude):
            selected += 1
            width = int(getattr(module, "weight").shape[1])  # noqa: B009 (typed as Tensor)
            if isinstance(gran, NM) and width % gran.m:
                raise ConfigError(
                    f"pattern {config.pattern!r} needs input widths divisible by {gran.m}; "
                    f"layer {name} has {width}"
                )
    if selected == 0:
        raise ConfigError(
            f"no Linear layer inside the blocks at {stack.prefix!r} matches "
            f"include={list(config.include)} exclude={list(config.exclude)}"
        )


def _copy_side_files(model_dir: Path, out_dir: Path) -> None:
    """Copy the config, generation config and tokenizer files (everything but the weights)."""
    for path in model_dir.iterdir():
        skip = path.suffix in (".safetensors", ".bin", ".gguf", ".pt", ".pth")
        if path.is_file() and not skip and path.name != INDEX_FILE:
            shutil.copy2(path, out_dir / path.name)


def _block_tensors(
    stack: BlockStack, index: int, checkpoint: ShardedCheckpoint, dtype: torch.dtype
) -> dict[str, Tensor]:
    prefix = stack.name(index) + "."
    names = [prefix + k for k in stack.blocks[index].state_dict()]
    return checkpoint.load(names, dtype)


def _stored(tensors: Mapping[str, Tensor], checkpoint: ShardedCheckpoint) -> dict[str, Tensor]:
    """``tensors`` in the dtypes the checkpoint stores them in."""
    return {k: v.to(checkpoint.torch_dtype(k)) for k, v in tensors.items()}


def prune_streaming(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str | LLMMethod = "wanda",
    sparsity: float = 0.5,
    pattern: str | None = None,
    calibration: Tensor | TextSource | None = None,
    n_samples: int = 8,
    seq_len: int = 128,
    seed: int = 0,
    compare: str | None = None,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    method_options: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    on_block: BlockCallback | None = None,
) -> StreamResult:
    """Prune the safetensors model in ``model_dir`` block by block into ``out_dir``.

    Args:
        method / sparsity / pattern / compare / include / exclude / method_options: as in
            :class:`prunekit.llm.LLMPruneConfig` (``pattern="2:4"`` for N:M).
        calibration: ``[n, seq_len]`` token windows, or a text file / data set tokenised with the
            model directory's tokenizer into ``n_samples`` windows of ``seq_len`` (seeded).
        dtype: the dtype blocks are computed in; tensors are written back in their stored dtype.
        on_block: called after each completed block (its index).

    An ``out_dir`` holding an interrupted run with the same settings resumes from it.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config = LLMPruneConfig(
        method=method if isinstance(method, str) else method.name,
        sparsity=sparsity,
        pattern=pattern,
        compare=compare,  # type: ignore[arg-type]
        include=tuple(include),
        exclude=tuple(exclude),
        bake=True,
        method_options=dict(method_options or {}),
    )
    algorithm = method if isinstance(method, LLMMethod) else config.build_method()
    start = time.perf_counter()
    checkpoint = ShardedCheckpoint(model_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise ConfigError(f"output directory {str(out_dir)!r} is the model directory")
    model, hf_config = build_skeleton(model_dir, dtype)
    where = check_coverage(model, checkpoint)
    stack = find_blocks(model)
    _check_layers(stack, config)
    windows = None
    if algorithm.needs_data:
        windows = _windows(
            calibration,
            model_dir,
            int(hf_config.vocab_size),
            n_samples=n_samples,
            seq_len=seq_len,
            seed=seed,
        )
    settings = {**dataclasses.asdict(config), "method": repr(algorithm), "dtype": str(dtype)}
    key = fingerprint(settings, checkpoint.fingerprint(), windows)
    state = _open_output(out_dir, key)
    block_prefix = stack.prefix + "."
    outside = _outside_groups(checkpoint, block_prefix)
    total = len(outside) + len(stack)
    if state.blocks_done == 0:
        for i, names in enumerate(outside, start=1):
            write_shard(out_dir / _shard_name(i, total), checkpoint.load(names))
            state.weight_map.update(dict.fromkeys(names, _shard_name(i, total)))
    needed = {n: where[n] for n in where if not n.startswith(block_prefix)}
    needed = {n: s for n, s in needed.items() if n not in _output_head(model)}
    materialise(model, checkpoint.load(sorted(set(needed.values())), dtype))
    materialise(model, {n: model.get_parameter(s) for n, s in needed.items() if n != s})
    resumed_from = state.blocks_done
    with torch.no_grad():
        inputs = None
        if windows is not None:
            inputs = capture_block_inputs(model, stack, windows)
            if resumed_from:
                inputs.hidden = load_hidden(out_dir, state).to(dtype)
        release_named(model, needed)  # the embeddings are not needed after block 0's inputs
        bar = tqdm(
            range(resumed_from, len(stack)), desc=algorithm.name, unit="block", disable=not progress
        )
        for index in bar:
            _prune_one(
                len(outside) + index + 1,
                model,
                stack,
                index,
                config,
                algorithm,
                inputs,
                checkpoint,
                dtype,
                out_dir,
                state,
                total,
            )
            if on_block is not None:
                on_block(index)
    write_index(out_dir, state.weight_map)
    _copy_side_files(model_dir, out_dir)
    finish(out_dir, state)
    return StreamResult(
        out_dir,
        dict(state.layer_sparsity),
        len(stack),
        resumed_from,
        time.perf_counter() - start,
    )


def _output_head(model: nn.Module) -> set[str]:
    """Names of the untied output projection's parameters: they act after the last block, so
    capturing block 0's inputs never needs them (saves the ``vocab x hidden`` matrix)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, nn.Module):
        return set()
    tied = {
        id(p) for n, p in model.named_parameters() if not n.startswith(_head_prefix(model, head))
    }
    return {
        f"{_head_prefix(model, head)}{n}" for n, p in head.named_parameters() if id(p) not in tied
    }


def _head_prefix(model: nn.Module, head: nn.Module) -> str:
    return next(f"{name}." for name, module in model.named_modules() if module is head)


def _open_output(out_dir: Path, key: str) -> Progress:
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


def _outside_groups(checkpoint: ShardedCheckpoint, block_prefix: str) -> list[list[str]]:
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


def _prune_one(
    shard_index: int,
    model: nn.Module,
    stack: BlockStack,
    index: int,
    config: LLMPruneConfig,
    algorithm: LLMMethod,
    inputs: Any,
    checkpoint: ShardedCheckpoint,
    dtype: torch.dtype,
    out_dir: Path,
    state: Progress,
    total: int,
) -> None:
    """Fill block ``index``, prune it, advance the activations, write its shard, drop it."""
    block = stack.blocks[index]
    materialise(model, _block_tensors(stack, index, checkpoint, dtype))
    achieved = prune_block(model, stack, index, config, inputs, method=algorithm)
    if inputs is not None and index + 1 < len(stack):
        advance(block, inputs)
    prefix = stack.name(index) + "."
    pruned = _stored({prefix + k: v for k, v in block.state_dict().items()}, checkpoint)
    release(block)
    shard = _shard_name(shard_index, total)
    write_shard(out_dir / shard, pruned)
    state.weight_map.update(dict.fromkeys(pruned, shard))
    del pruned
    state.layer_sparsity.update(achieved)
    last = inputs is None or index + 1 == len(stack)
    save_block(out_dir, state, None if last else inputs.hidden, index + 1)
