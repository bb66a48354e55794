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
``width=`` / ``heads=`` / ``mlp=`` remove whole heads and MLP neurons instead
(:mod:`prunekit.llm.stream_width`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prunekit.errors import ConfigError
from prunekit.granularity import NM
from prunekit.llm.blocks import BlockInputs, BlockStack, advance
from prunekit.llm.calibration import TextSource
from prunekit.llm.methods import LLMMethod
from prunekit.llm.sequential import LLMPruneConfig, prune_block
from prunekit.llm.shards import write_shard
from prunekit.llm.stream_output import (
    BlockCallback,
    StreamResult,
    block_tensors,
    stored,
)
from prunekit.llm.stream_progress import save_block
from prunekit.llm.stream_run import (
    StreamRun,
    StreamSource,
    close_run,
    open_run,
    open_source,
    run_blocks,
)
from prunekit.llm.stream_skeleton import materialise, release
from prunekit.llm.stream_width import StreamWidthConfig, prune_width_streaming


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


def prune_streaming(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str | LLMMethod | None = None,
    sparsity: float | None = None,
    pattern: str | None = None,
    width: float | StreamWidthConfig | None = None,
    heads: int | None = None,
    mlp: int | None = None,
    estimator: str = "activation",
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
            :class:`prunekit.llm.LLMPruneConfig` (``pattern="2:4"`` for N:M); the defaults are
            Wanda at 0.5.
        width / heads / mlp / estimator: width pruning instead (whole heads and MLP neurons,
            :func:`prunekit.llm.stream_width.prune_width_streaming`): ``width`` is the fraction
            of the blocks' parameters removed, or ``heads`` / ``mlp`` the units removed per
            block; a :class:`~prunekit.llm.stream_width.StreamWidthConfig` sets every option.
        calibration: ``[n, seq_len]`` token windows, or a text file / data set tokenised with the
            model directory's tokenizer into ``n_samples`` windows of ``seq_len`` (seeded).
        dtype: the dtype blocks are computed in; tensors are written back in their stored dtype.
        on_block: called after each completed block (its index).

    An ``out_dir`` holding an interrupted run with the same settings resumes from it.
    """
    if width is not None or heads is not None or mlp is not None:
        if method is not None or sparsity is not None or pattern is not None:
            raise ConfigError(
                "method= / sparsity= / pattern= prune weights, width= / heads= / mlp= whole "
                "heads and MLP neurons: give one or the other"
            )
        if isinstance(width, StreamWidthConfig) and (heads is not None or mlp is not None):
            raise ConfigError("heads= / mlp= go into the StreamWidthConfig given as width=")
        return prune_width_streaming(
            model_dir,
            out_dir,
            width
            if isinstance(width, StreamWidthConfig)
            else StreamWidthConfig(width=width, heads=heads, mlp=mlp, estimator=estimator),
            calibration=calibration,
            n_samples=n_samples,
            seq_len=seq_len,
            seed=seed,
            dtype=dtype,
            progress=progress,
            on_block=on_block,
        )
    method = "wanda" if method is None else method
    config = LLMPruneConfig(
        method=method if isinstance(method, str) else method.name,
        sparsity=0.5 if sparsity is None else sparsity,
        pattern=pattern,
        compare=compare,  # type: ignore[arg-type]
        include=tuple(include),
        exclude=tuple(exclude),
        bake=True,
        method_options=dict(method_options or {}),
    )
    algorithm = method if isinstance(method, LLMMethod) else config.build_method()
    start = time.perf_counter()
    source = open_source(model_dir, out_dir, dtype)
    _check_layers(source.stack, config)
    windows = None
    if algorithm.needs_data:
        windows = source.windows(calibration, n_samples=n_samples, seq_len=seq_len, seed=seed)
    settings = {**dataclasses.asdict(config), "method": repr(algorithm), "dtype": str(dtype)}
    run = open_run(source, out_dir, settings, windows)

    def step(index: int, inputs: BlockInputs | None) -> None:
        _prune_one(source, run, index, config, algorithm, inputs, dtype)

    resumed_from = run_blocks(
        source, run, windows, step, dtype=dtype, desc=algorithm.name, progress=progress,
        on_block=on_block,
    )  # fmt: skip
    close_run(source, run)
    return StreamResult(
        run.out_dir,
        dict(run.state.layer_sparsity),
        len(source.stack),
        resumed_from,
        time.perf_counter() - start,
    )


def _prune_one(
    source: StreamSource,
    run: StreamRun,
    index: int,
    config: LLMPruneConfig,
    algorithm: LLMMethod,
    inputs: BlockInputs | None,
    dtype: torch.dtype,
) -> None:
    """Fill block ``index``, prune it, advance the activations, write its shard, drop it."""
    stack, model = source.stack, source.model
    block = stack.blocks[index]
    materialise(model, block_tensors(stack, index, source.checkpoint, dtype))
    achieved = prune_block(model, stack, index, config, inputs, method=algorithm)
    if inputs is not None and index + 1 < len(stack):
        advance(block, inputs)
    prefix = stack.name(index) + "."
    pruned = stored({prefix + k: v for k, v in block.state_dict().items()}, source.checkpoint)
    release(block)
    shard = run.block_shard(index)
    write_shard(run.out_dir / shard, pruned)
    run.state.weight_map.update(dict.fromkeys(pruned, shard))
    del pruned
    run.state.layer_sparsity.update(achieved)
    last = index + 1 == len(stack)
    save_block(run.out_dir, run.state, None if last or inputs is None else inputs.hidden, index + 1)
