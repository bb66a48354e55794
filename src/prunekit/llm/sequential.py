"""Layer-by-layer (sequential) one-shot pruning of transformer LLMs and encoders.

As in the SparseGPT and Wanda reference code: capture the inputs of block 0 on the calibration
windows, then for each block record the inputs of every Linear in it (forward hooks), prune each
Linear from those statistics, and run the *pruned* block again to produce the next block's
inputs. Only one block's activations (``[n, seq, hidden]``) are held besides the model. Masks go
through :func:`prunekit.masks.apply_masks`, so measurement and saving see a normally masked
model; ``bake=True`` makes each block's zeros permanent as soon as it is done (no mask buffers).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from prunekit.errors import ConfigError, DataError, check_sparsity
from prunekit.granularity import NM, Granularity, get_granularity
from prunekit.llm.blocks import BlockInputs, BlockStack, advance, capture_block_inputs, find_blocks
from prunekit.llm.blocks import run_block as run_block_outputs
from prunekit.llm.methods import (
    Compare,
    LayerPrune,
    LLMMethod,
    SparsityTarget,
    get_llm_method,
)
from prunekit.llm.owl import check_owl, owl_layer_sparsity
from prunekit.llm.stats import InputStats, record_inputs
from prunekit.masks import apply_masks, bake_masks, clone_model
from prunekit.measure.inputs import eval_mode

Allocation = Literal["uniform", "owl"]
"""How the target sparsity is spread over layers."""

StatsReducer = Callable[[Mapping[str, InputStats]], None]
"""Combines a block's input statistics in place before its layers are solved, e.g. a sum over
processes that each ran a share of the calibration windows (:mod:`prunekit.distributed`)."""

LayerSolver = Callable[
    [Mapping[str, Tensor], Callable[[str], LayerPrune]], Mapping[str, LayerPrune]
]
"""Decides a block's layers, given each layer's weight (name -> weight) and a function that
solves one layer by name; returns every layer's decision, e.g. each process solving its share
of the layers and the decisions exchanged (:mod:`prunekit.distributed`)."""


@dataclass(frozen=True)
class LLMPruneConfig:
    """What to prune and how.

    Attributes:
        method: a name in ``LLM_METHODS`` (``magnitude``, ``wanda``, ``sparsegpt``).
        sparsity: fraction of each layer's weights removed (ignored with a ``pattern``).
        pattern: ``"2:4"``, ``"4:8"``, …: keep N of every M consecutive input weights.
        compare: ``"row"`` or ``"layer"`` for unstructured selection; the method's default if None.
        include / exclude: glob patterns on fully qualified Linear names inside the blocks.
        blocks: module path of the block list, if not a known architecture.
        bake: make each block's masks permanent right after it is pruned.
        layer_sparsity: per-layer sparsity overrides (fully qualified name -> sparsity), e.g.
            from a sensitivity analysis; they win over ``allocation``.
        allocation: ``"uniform"`` (every layer at ``sparsity``) or ``"owl"``: outlier-weighted
            per-block sparsity with mean ``sparsity`` (:mod:`prunekit.llm.owl`; unstructured only).
        owl_lambda / owl_threshold: OWL's ``lambda`` (layers stay within ``sparsity +- lambda``)
            and ``M`` (a Wanda score above ``M`` x the block's mean is an outlier).
        method_options: options of the method (``{"damp": 0.01}`` for SparseGPT).
    """

    method: str = "wanda"
    sparsity: float = 0.5
    pattern: str | None = None
    compare: Compare | None = None
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    blocks: str | None = None
    bake: bool = False
    layer_sparsity: Mapping[str, float] = field(default_factory=dict)
    allocation: Allocation = "uniform"
    owl_lambda: float = 0.08
    owl_threshold: float = 5.0
    method_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        if self.allocation not in ("uniform", "owl"):
            raise ConfigError(f"allocation must be 'uniform' or 'owl', got {self.allocation!r}")
        if self.allocation == "owl":
            if self.pattern is not None:
                raise ConfigError(
                    f"allocation='owl' sets a sparsity per layer and cannot be combined with "
                    f"the fixed N:M pattern {self.pattern!r}"
                )
            check_owl(self.sparsity, self.owl_lambda, self.owl_threshold)
        for name, value in self.layer_sparsity.items():
            check_sparsity(value, f"sparsity of layer {name!r}")
        self.build_method()
        self.granularity()
        if self.compare not in (None, "row", "layer"):
            raise ConfigError(f"compare must be 'row' or 'layer', got {self.compare!r}")

    def build_method(self) -> LLMMethod:
        return get_llm_method(self.method, **dict(self.method_options))

    def granularity(self) -> Granularity:
        if self.pattern is None:
            return get_granularity("element")
        gran = get_granularity(self.pattern)
        if not isinstance(gran, NM):
            raise ConfigError(f"pattern must be N:M such as '2:4', got {self.pattern!r}")
        return gran

    def target(self, layer: str, method: LLMMethod) -> SparsityTarget:
        sparsity = self.layer_sparsity.get(layer, self.sparsity)
        return SparsityTarget(sparsity, self.compare or method.default_compare)


@dataclass(frozen=True)
class LLMPruneResult:
    """The pruned model, the achieved sparsity of every pruned layer, and the wall time."""

    model: nn.Module
    config: LLMPruneConfig
    layer_sparsity: dict[str, float]
    seconds: float

    @property
    def sparsity(self) -> float:
        """Mean sparsity over the pruned layers (unweighted)."""
        values = list(self.layer_sparsity.values())
        return sum(values) / len(values) if values else 0.0


def block_stats(
    block: nn.Module,
    layers: Mapping[str, nn.Module],
    inputs: BlockInputs,
    *,
    hessian: bool,
) -> dict[str, InputStats]:
    """Input statistics of ``layers`` (name -> Linear of ``block``) over every window; layers
    that read the same input tensor (``q/k/v_proj``, ``gate/up_proj``) share one object."""
    with record_inputs(layers, hessian=hessian, share=True) as stats:
        for _ in run_block_outputs(block, inputs):
            pass
    return stats


def _write_weight(module: nn.Module, attr: str, value: Tensor) -> None:
    if parametrize.is_parametrized(module, attr):
        target = module.parametrizations[attr].original  # type: ignore[union-attr,index]
    else:
        target = getattr(module, attr)
    with torch.no_grad():
        target.copy_(value.to(target.dtype))


def _reduce_and_finish(stats: Mapping[str, InputStats], reduce: StatsReducer | None) -> None:
    """Reduce each distinct statistic once (first reader's name), then keep only its float32
    Hessian, in layer order."""
    distinct: dict[int, tuple[str, InputStats]] = {}
    for name, one in stats.items():
        distinct.setdefault(id(one), (name, one))
    if reduce is not None:
        reduce(dict(distinct.values()))
    for _, one in distinct.values():
        one.finish_hessian()


def prune_block(
    model: nn.Module,
    stack: BlockStack,
    index: int,
    config: LLMPruneConfig,
    inputs: BlockInputs | None,
    *,
    method: LLMMethod | None = None,
    reduce: StatsReducer | None = None,
    solver: LayerSolver | None = None,
) -> dict[str, float]:
    """Prune every selected Linear of block ``index``; return each layer's achieved sparsity.

    ``reduce`` gets the block's input statistics before any layer is solved, each distinct one
    once (under the name of the first layer that reads it; layers reading the same input share
    it); ``solver`` (:data:`LayerSolver`) decides the layers instead of solving them one after
    the other.

    Memory (SparseGPT on wide blocks): one float64 ``X^T X`` per distinct input while the block
    runs, then each turned into a float32 Hessian and freed once its last layer is solved."""
    method = method or config.build_method()
    granularity = config.granularity()
    layers = stack.linears(index, config.include, config.exclude)
    stats: dict[str, InputStats] = {}
    if method.needs_data:
        if inputs is None:
            raise DataError(f"method {method.name!r} needs calibration data")
        modules = {name: module for name, module, _ in layers}
        stats = block_stats(stack.blocks[index], modules, inputs, hessian=method.needs_hessian)
        _reduce_and_finish(stats, reduce)
    found = {name: (module, rule) for name, module, rule in layers}

    def solve(name: str) -> LayerPrune:
        module, rule = found[name]
        group = granularity.group(name, module, rule)
        weight = getattr(module, rule.weight).detach()
        # statistics are dropped once their last layer is solved (shared ones stay till then)
        return method.prune_layer(group, weight, stats.pop(name, None), config.target(name, method))

    decided = None
    if solver is not None:
        decided = solver({n: getattr(m, r.weight).detach() for n, (m, r) in found.items()}, solve)
    masks: dict[str, Tensor] = {}
    achieved: dict[str, float] = {}
    for name, module, rule in layers:
        group = granularity.group(name, module, rule)
        decision = decided[name] if decided is not None else solve(name)
        if decision.weight is not None:
            _write_weight(module, rule.weight, decision.weight)
        masks[group.root.tensor] = decision.keep.bool()  # 0/1; a quarter of float32's memory
        achieved[name] = 1.0 - float(decision.keep.float().mean())
        del decision  # its weight is not held through the next layer's solve
    apply_masks(model, masks)
    if config.bake:
        bake_masks(stack.blocks[index])
    return achieved


def warn_small_calibration(blocks: Iterable[nn.Module], tokens: int) -> None:
    """Warn when fewer calibration tokens than the widest Linear input: each layer's input
    statistics (``X^T X`` for SparseGPT) then have rank below their width, and the solves
    rest on the damping more than on data (Frantar & Alistarh 2023 calibrate on 128 x 2048)."""
    widths = [m.in_features for b in blocks for m in b.modules() if isinstance(m, nn.Linear)]
    if widths and tokens < max(widths):
        warnings.warn(
            f"{tokens} calibration tokens is fewer than the widest layer's {max(widths)} inputs: "
            "its input statistics are rank-deficient; use more or longer calibration windows",
            RuntimeWarning,
            stacklevel=3,
        )


def prune_llm(
    model: nn.Module,
    calibration: Tensor | None,
    config: LLMPruneConfig,
    *,
    inplace: bool = False,
    progress: bool = True,
    reduce: StatsReducer | None = None,
    solver: LayerSolver | None = None,
) -> LLMPruneResult:
    """Prune a transformer block by block (see the module docstring).

    Args:
        calibration: ``[n, seq_len]`` token windows (:func:`calibration_windows`); may be None
            for methods that need no data (magnitude).
        inplace: prune ``model`` itself; otherwise a copy (:func:`prunekit.masks.clone_model`).
        progress: show a tqdm bar over blocks.
        reduce: combines each block's input statistics before its layers are solved
            (:data:`StatsReducer`).
        solver: decides each block's layers once their statistics are reduced
            (:data:`LayerSolver`); by default they are solved one after the other.
    """
    method = config.build_method()
    if method.needs_data and calibration is None:
        raise DataError(
            f"method {method.name!r} needs calibration data: pass token windows from "
            "prunekit.llm.calibration_windows(tokenizer, text_file)"
        )
    target = model if inplace else clone_model(model)
    stack = find_blocks(target, config.blocks)
    if method.needs_data and calibration is not None:
        warn_small_calibration(stack.blocks, calibration.numel())
    start = time.perf_counter()
    if config.allocation == "owl":
        config = _with_owl(target, calibration, config, progress)
    achieved: dict[str, float] = {}
    with eval_mode(target), torch.no_grad():
        inputs = None
        if method.needs_data:
            assert calibration is not None
            inputs = capture_block_inputs(target, stack, calibration)
        bar = tqdm(range(len(stack)), desc=f"{method.name}", unit="block", disable=not progress)
        for index in bar:
            achieved.update(
                prune_block(
                    target,
                    stack,
                    index,
                    config,
                    inputs,
                    method=method,
                    reduce=reduce,
                    solver=solver,
                )
            )
            if inputs is not None and index + 1 < len(stack):
                advance(stack.blocks[index], inputs)
    if not achieved:
        raise ConfigError(
            f"no Linear layer inside the blocks at {stack.prefix!r} matches "
            f"include={list(config.include)} exclude={list(config.exclude)}"
        )
    return LLMPruneResult(target, config, achieved, time.perf_counter() - start)


def _with_owl(
    model: nn.Module, calibration: Tensor | None, config: LLMPruneConfig, progress: bool
) -> LLMPruneConfig:
    """``config`` with OWL's per-layer sparsities (explicit ``layer_sparsity`` entries win)."""
    if calibration is None:
        raise DataError(
            "allocation='owl' scores outliers with Wanda and needs calibration data, "
            "also for the magnitude method"
        )
    owl = owl_layer_sparsity(
        model,
        calibration,
        sparsity=config.sparsity,
        lam=config.owl_lambda,
        threshold=config.owl_threshold,
        blocks=config.blocks,
        include=config.include,
        exclude=config.exclude,
        progress=progress,
    )
    return dataclasses.replace(config, layer_sparsity={**owl, **config.layer_sparsity})


def layer_names(model: nn.Module, blocks: str | None = None) -> list[str]:
    """Fully qualified names of every Linear layer inside the model's blocks."""
    stack = find_blocks(model, blocks)
    return [name for i in range(len(stack)) for name, _, _ in stack.linears(i)]
