"""Width pruning (whole attention heads and MLP neurons) of an LLM streamed from its shards.

The in-memory :func:`prunekit.llm.width.prune_width` decides one per-layer removal for the whole
model (:func:`prunekit.llm.width.allocate`: the same head units and MLP neurons go from every
block, so the config can describe the result) and then scores and removes units layer by layer
(``scope="layer"``). Both steps work one block at a time, so streaming keeps them:

1. **Allocation** from the config alone: a one-block stand-in of the architecture (small
   vocabulary, meta tensors) is traced to find its head and MLP units and their parameters; these
   times the number of blocks give the same :class:`~prunekit.llm.width.WidthAllocation` as the
   in-memory path. Counts (``heads=`` / ``mlp=``, removed per block) may be given instead.
2. **One block at a time**: block *k*'s tensors are put into the stand-in, its units are scored
   (:class:`~prunekit.llm.width_scores.UnitActivation` on the block's calibration inputs, or a
   data-free estimator such as ``magnitude``), the structural pruner removes the allocated units
   (GQA: a key/value head with its query heads is one unit, as in memory) and verifies surgery
   against masking, and the narrower block is written as its own shard.
3. **Next block's inputs**: from the *pruned* block by default (``propagate="pruned"``, as
   layer-wise pruning does), or from the dense block (``"dense"``): then every block is scored
   on the activations of the dense model, exactly what ``prune_width`` does, and the two give the
   same model. Gradient estimators (``taylor``) need the loss at the model's output, which a
   block alone has not: they are refused.
4. **Plan**: each block's surgery plan, renamed to its block, is kept in the progress file; at
   the end ``prunekit_plan.json`` and the narrowed ``config.json`` are written, so
   :func:`prunekit.llm.load_pruned` loads the directory, and ``from_pretrained`` too when the
   config describes the shapes (LLaMA-family models with an explicit ``head_dim``).

Every check — shards, architecture, estimator, allocation (counts that remove every head or
leave an MLP width that is not a multiple of ``round_to``) and calibration data — runs before the
first shard is written; a killed run resumes after its last complete block.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.api import prune
from prunekit.errors import ConfigError, DataError
from prunekit.estimators import Estimator, ScoringData
from prunekit.llm.blocks import BlockInputs, advance, find_blocks
from prunekit.llm.calibration import TextSource
from prunekit.llm.pruned_io import PLAN_FILE
from prunekit.llm.shards import ShardedCheckpoint, write_shard
from prunekit.llm.stream_output import BlockCallback, StreamResult, block_tensors, stored
from prunekit.llm.stream_progress import save_block
from prunekit.llm.stream_run import (
    StreamRun,
    StreamSource,
    close_run,
    open_run,
    open_source,
    run_blocks,
)
from prunekit.llm.stream_skeleton import build_skeleton, check_coverage, materialise, release
from prunekit.llm.stream_width_plan import (
    StreamWidthConfig,
    build_proxy,
    plan_allocation,
    proxy_example,
)
from prunekit.llm.width import (
    count_params,
)
from prunekit.surgery import Plan, TensorCut

# --- one block --------------------------------------------------------------------------------


def _scoring_data(hidden: Tensor, inputs: BlockInputs, layer: str) -> ScoringData:
    """The block's calibration inputs as one scoring batch per window; the forward runs the
    stand-in's block (``layer``) on them."""

    def forward(model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        states, index = batch
        j = int(index)
        out = model.get_submodule(layer)(states, *inputs.args[j], **inputs.kwargs[j])
        return (out[0] if isinstance(out, (tuple, list)) else out), states

    batches = [(hidden[j : j + 1], torch.tensor(j)) for j in range(hidden.shape[0])]
    return ScoringData(batches, forward=forward, progress=False)


def _rename(plan: Plan, old: str, new: str) -> Plan:
    """``plan`` with the module prefix ``old`` replaced by ``new`` in every name."""

    def name(text: str) -> str:
        return new + text[len(old) :] if text.startswith(old) else text

    tensors = {
        name(k): TensorCut(name(c.tensor), c.shape_before, c.removed, tuple(map(name, c.aliases)))
        for k, c in plan.tensors.items()
    }
    groups = {name(k): v for k, v in plan.groups.items()}
    modules = {name(k): v for k, v in plan.modules.items()}
    return Plan(tensors, groups, modules)


def _merge(done: Plan, block: Plan) -> Plan:
    """The plan so far with one more block's; the model-level entry (config) of the first."""
    modules = {**block.modules, **done.modules}
    return Plan({**done.tensors, **block.tensors}, {**done.groups, **block.groups}, modules)


@dataclass(frozen=True)
class _Width:
    """What the per-block step needs besides the source and the run."""

    config: StreamWidthConfig
    estimator: Estimator
    overrides: dict[str, float]
    dtype: torch.dtype


def _prune_one(
    source: StreamSource, run: StreamRun, width: _Width, index: int, inputs: BlockInputs | None
) -> None:
    """Fill block ``index`` into a stand-in, score and remove its units, advance the
    activations, write its shard and its plan, drop it."""
    stack, last = source.stack, index + 1 == len(source.stack)
    proxy = build_proxy(source.model, source.hf_config, index, width.dtype)
    proxy_stack = find_blocks(proxy)
    real, local = stack.name(index) + ".", proxy_stack.name(0) + "."
    dense = block_tensors(stack, index, source.checkpoint, width.dtype)
    materialise(proxy, {local + k[len(real) :]: v for k, v in dense.items()})
    del dense
    layer: nn.Module = proxy_stack.blocks[0]
    data = None
    if inputs is not None:  # the estimator reads activations
        hidden = inputs.hidden
        if width.config.propagate == "dense" and not last:
            hidden = hidden.clone()
            advance(layer, inputs)
        data = _scoring_data(hidden, inputs, proxy_stack.name(0))
    plan = Plan({})
    if width.overrides:
        result = prune(
            proxy,
            proxy_example(proxy),
            sparsity=0.0,
            granularity="channel",
            estimator=width.estimator,
            data=data,
            scope="layer",
            include=list(width.overrides),
            overrides=width.overrides,
            verify=width.config.verify,
            metrics=False,
        )
        assert result.plan is not None  # structural pruning records its plan
        plan = _rename(result.plan, local, real)
        layer = find_blocks(result.model).blocks[0]
    if inputs is not None and width.config.propagate == "pruned" and not last:
        advance(layer, inputs)
    tensors = stored({real + k: v for k, v in layer.state_dict().items()}, source.checkpoint)
    release(layer)
    shard = run.block_shard(index)
    write_shard(run.out_dir / shard, tensors)
    run.state.weight_map.update(dict.fromkeys(tensors, shard))
    del tensors
    merged = _merge(Plan.from_dict(run.state.plan) if run.state.plan else Plan({}), plan)
    run.state.plan = merged.to_dict()
    run.state.layer_sparsity.update(_layer_sparsity(plan))
    save_block(run.out_dir, run.state, None if last or inputs is None else inputs.hidden, index + 1)


def _layer_sparsity(plan: Plan) -> dict[str, float]:
    """Fraction of each cut Linear weight that was removed."""
    out = {}
    for name, cut in plan.tensors.items():
        if name.endswith(".weight"):
            before, after = math.prod(cut.shape_before), math.prod(cut.shape_after)
            out[name.removesuffix(".weight")] = 1 - after / before
    return out


def _removed_params(plan: Plan) -> int:
    return sum(math.prod(c.shape_before) - math.prod(c.shape_after) for c in plan.tensors.values())


# --- the run ----------------------------------------------------------------------------------


def prune_width_streaming(
    model_dir: str | Path,
    out_dir: str | Path,
    config: StreamWidthConfig,
    *,
    calibration: Tensor | TextSource | None = None,
    n_samples: int = 8,
    seq_len: int = 128,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    on_block: BlockCallback | None = None,
) -> StreamResult:
    """Remove whole heads and MLP neurons from the safetensors model in ``model_dir``, block by
    block, into ``out_dir`` (see the module docstring). ``calibration`` is as in
    :func:`prunekit.llm.streaming.prune_streaming` (needed by ``activation``). An ``out_dir``
    holding an interrupted run with the same settings resumes from it.

    ``result.layer_sparsity`` is the fraction of each narrowed Linear's weight removed;
    ``result.width`` the allocation and parameter counts.
    """
    estimator = config.build_estimator()
    start = time.perf_counter()
    source = open_source(model_dir, out_dir, dtype)
    model, stack = source.model, source.stack
    params_before = count_params(model)
    block_params = sum(count_params(b) for b in stack.blocks)
    denominator = block_params if config.of == "blocks" else params_before
    proxy = build_proxy(model, source.hf_config, 0, dtype)
    allocation, overrides = plan_allocation(proxy, config, len(stack), denominator)
    del proxy
    windows = None
    if estimator.needs_data:
        windows = source.windows(calibration, n_samples=n_samples, seq_len=seq_len, seed=seed)
    settings = {**dataclasses.asdict(config), "dtype": str(dtype), "kind": "width"}
    run = open_run(source, out_dir, settings, windows)
    width = _Width(config, estimator, overrides, dtype)

    def step(index: int, inputs: BlockInputs | None) -> None:
        _prune_one(source, run, width, index, inputs)

    resumed_from = run_blocks(
        source, run, windows, step, dtype=dtype, desc="width", progress=progress,
        on_block=on_block,
    )  # fmt: skip
    plan = Plan.from_dict(run.state.plan) if run.state.plan else Plan({})

    def write_plan(out: Path) -> None:
        _write_config(source.hf_config, plan, out)
        (out / PLAN_FILE).write_text(plan.to_json(indent=1, sort_keys=True))

    close_run(source, run, write_plan)
    removed = _removed_params(plan)
    summary = {
        "allocation": allocation.to_dict(),
        "params_before": params_before,
        "params_after": params_before - removed,
        "block_params_before": block_params,
        "sparsity": round(removed / params_before, 6),
        "block_sparsity": round(removed / block_params, 6),
        "propagate": config.propagate,
        "config_describes_shapes": _describes_shapes(run.out_dir),
    }
    return StreamResult(
        run.out_dir, dict(run.state.layer_sparsity), len(stack), resumed_from,
        time.perf_counter() - start, summary,
    )  # fmt: skip


def _write_config(hf_config: Any, plan: Plan, out_dir: Path) -> None:
    """``config.json`` with the widths surgery changed (``load_pruned`` restores the originals
    from the plan)."""
    config = copy.deepcopy(hf_config)
    for key, change in plan.modules.get("", {}).items():
        if key.startswith("config."):
            setattr(config, key.removeprefix("config."), change[1])
    config.save_pretrained(out_dir)


def _describes_shapes(out_dir: Path) -> bool:
    """Whether the written config's architecture has exactly the written shapes (then
    ``from_pretrained`` loads the directory)."""
    try:
        model, _ = build_skeleton(out_dir, torch.float32)
        check_coverage(model, ShardedCheckpoint(out_dir))
    except (ConfigError, DataError):
        return False
    return True
