"""Expert pruning of mixture-of-experts language models: score whole experts on calibration
text and remove the lowest, with their router rows.

An expert that the router rarely chooses, or chooses with little weight, contributes little to
the block's output (Lu et al. 2024, *Not All Experts are Equal: Efficient Expert Pruning and
Skipping for Mixture-of-Experts LLMs*; Muzio et al. 2024, *SEER-MoE*, use the same routing
statistics). Two scores per expert, summed over every calibration token:

- ``"weight"``: the routing weight the expert receives among the token's top-k (default);
- ``"frequency"``: how often it is among the top-k.

The same number of experts is removed from every MoE block, so the config still describes the
model (``num_local_experts``) and ``save_pretrained`` / ``from_pretrained`` round-trip. Both
layouts of experts are handled: one module per expert (``nn.ModuleList``) and the fused 3-D
tensors of recent Hugging Face models (``experts.gate_up_proj[e]``, ``experts.down_proj[e]``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, DataError

ExpertMetric = Literal["weight", "frequency"]
EXPERT_METRICS: tuple[str, ...] = ("weight", "frequency")
EXPERT_COUNT_ATTRIBUTES: tuple[str, ...] = ("num_local_experts", "num_experts", "n_routed_experts")
"""Config and module attributes that hold the number of experts (Mixtral, Qwen-MoE, DeepSeek)."""
TOP_K_ATTRIBUTES: tuple[str, ...] = ("top_k", "num_experts_per_tok")


@dataclass(frozen=True)
class MoeBlock:
    """One mixture-of-experts block: its name, router weight (``[experts, hidden]``), experts
    module and how many experts each token is routed to."""

    name: str
    module: nn.Module
    router: nn.Module
    experts: nn.Module
    top_k: int

    @property
    def n_experts(self) -> int:
        return int(_router_weight(self.router).shape[0])


def _router_weight(router: nn.Module) -> Tensor:
    weight = getattr(router, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ConfigError(f"router {type(router).__name__} has no [experts, hidden] weight")
    return weight


def _top_k(module: nn.Module, router: nn.Module) -> int:
    for owner in (module, router):
        for attribute in TOP_K_ATTRIBUTES:
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
    raise ConfigError(f"MoE block {type(module).__name__} does not say its top-k")


def find_moe_blocks(model: nn.Module) -> list[MoeBlock]:
    """Every module with a ``gate`` (or ``router``) holding an ``[experts, hidden]`` weight and
    an ``experts`` child, in model order."""
    blocks = []
    for name, module in model.named_modules():
        router = getattr(module, "gate", None) or getattr(module, "router", None)
        experts = getattr(module, "experts", None)
        if isinstance(router, nn.Module) and isinstance(experts, nn.Module):
            weight = getattr(router, "weight", None)
            if isinstance(weight, Tensor) and weight.dim() == 2:
                blocks.append(MoeBlock(name, module, router, experts, _top_k(module, router)))
    return blocks


def _router_logits(output: Any) -> Tensor:
    """The router's logits: its output, or the first element of the tuple it returns."""
    logits = output[0] if isinstance(output, tuple) else output
    if not isinstance(logits, Tensor):
        raise ConfigError(f"router returned {type(logits).__name__}, expected logits")
    return logits


@contextmanager
def _routing_recorder(
    blocks: list[MoeBlock], totals: dict[str, Tensor], metric: str
) -> Iterator[None]:
    def hook(block: MoeBlock):  # type: ignore[no-untyped-def]
        def record(module: nn.Module, args: Any, output: Any) -> None:
            logits = _router_logits(output).detach().float().reshape(-1, block.n_experts)
            probs = logits.softmax(-1)
            top, index = probs.topk(block.top_k, dim=-1)
            mass = top / top.sum(-1, keepdim=True) if metric == "weight" else torch.ones_like(top)
            total = torch.zeros(block.n_experts, dtype=torch.float64)
            total.index_add_(0, index.flatten(), mass.flatten().double())
            totals[block.name] = totals.get(block.name, torch.zeros_like(total)) + total

        return record

    handles = [b.router.register_forward_hook(hook(b)) for b in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def expert_scores(
    model: nn.Module, windows: Tensor, *, metric: str = "weight", batch_size: int = 4
) -> dict[str, Tensor]:
    """``block name -> one score per expert`` over every token of ``windows`` (``[n, seq]``)."""
    if metric not in EXPERT_METRICS:
        raise ConfigError(f"expert metric must be one of {EXPERT_METRICS}, got {metric!r}")
    if windows.dim() != 2 or windows.shape[0] == 0:
        raise DataError(
            f"expert scores need token windows [n, seq_len], got {tuple(windows.shape)}"
        )
    blocks = find_moe_blocks(model)
    if not blocks:
        raise ConfigError(f"{type(model).__name__} has no mixture-of-experts block")
    totals: dict[str, Tensor] = {}
    with _routing_recorder(blocks, totals, metric), torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            model(input_ids=windows[start : start + batch_size])
    return {
        b.name: totals.get(b.name, torch.zeros(b.n_experts, dtype=torch.float64)) for b in blocks
    }


def _keep_rows(parameter: Tensor, keep: Tensor) -> nn.Parameter:
    return nn.Parameter(parameter.detach()[keep].clone(), requires_grad=parameter.requires_grad)


def _remove_from_block(block: MoeBlock, keep: Tensor) -> None:
    n_experts = block.n_experts  # read before the router shrinks
    router = block.router
    router.weight = _keep_rows(_router_weight(router), keep)
    bias = getattr(router, "bias", None)
    if isinstance(bias, nn.Parameter):
        router.bias = _keep_rows(bias, keep)
    experts = block.experts
    if isinstance(experts, nn.ModuleList):
        block.module.experts = nn.ModuleList([experts[int(i)] for i in keep])
    else:
        for name, parameter in list(experts.named_parameters(recurse=False)):
            if parameter.dim() >= 2 and parameter.shape[0] == n_experts:
                setattr(experts, name, _keep_rows(parameter, keep))
    kept = int(keep.numel())
    for owner in (block.module, router, block.module.experts):
        for attribute in EXPERT_COUNT_ATTRIBUTES:
            if isinstance(getattr(owner, attribute, None), int):
                setattr(owner, attribute, kept)


@dataclass
class ExpertPruneResult:
    """The model with fewer experts, the scores and which experts each block lost."""

    model: nn.Module
    metric: str
    scores: dict[str, list[float]]
    removed: dict[str, list[int]]
    params_before: int
    params_after: int
    seconds: float

    @property
    def sparsity(self) -> float:
        return 1.0 - self.params_after / self.params_before


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def remove_experts(
    model: nn.Module, removed: dict[str, list[int]], *, inplace: bool = False
) -> nn.Module:
    """Remove the listed experts (``block name -> expert indices``) with their router rows."""
    target = model if inplace else copy.deepcopy(model)
    blocks = {b.name: b for b in find_moe_blocks(target)}
    unknown = sorted(set(removed) - set(blocks))
    if unknown:
        raise ConfigError(f"no mixture-of-experts block named {unknown[0]!r}")
    counts = {len(v) for v in removed.values()}
    for name, indices in removed.items():
        block = blocks[name]
        if len(set(indices)) != len(indices) or any(not 0 <= i < block.n_experts for i in indices):
            raise ConfigError(f"{name}: expert indices must be distinct, in [0, {block.n_experts})")
        if block.n_experts - len(indices) < block.top_k:
            raise ConfigError(
                f"{name}: keeping {block.n_experts - len(indices)} experts is fewer than top-k "
                f"= {block.top_k}"
            )
    for name, indices in removed.items():
        keep = torch.ones(blocks[name].n_experts, dtype=torch.bool)
        keep[indices] = False
        _remove_from_block(blocks[name], keep.nonzero().flatten())
    config = getattr(target, "config", None)
    if config is not None and len(counts) == 1 and len(removed) == len(blocks):
        for attribute in EXPERT_COUNT_ATTRIBUTES:
            if isinstance(getattr(config, attribute, None), int):
                setattr(config, attribute, getattr(config, attribute) - counts.pop())
                break
    return target


def prune_experts(
    model: nn.Module,
    windows: Tensor,
    k: int,
    *,
    metric: str = "weight",
    inplace: bool = False,
    batch_size: int = 4,
) -> ExpertPruneResult:
    """Remove the ``k`` lowest-scoring experts of every MoE block (scored on ``windows``)."""
    start = time.perf_counter()
    blocks = find_moe_blocks(model)
    if not blocks:
        raise ConfigError(f"{type(model).__name__} has no mixture-of-experts block")
    fewest = min(b.n_experts - b.top_k for b in blocks)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= fewest:
        raise ConfigError(
            f"experts to remove per block must be an integer in [1, {fewest}], got {k!r}"
        )
    scores = expert_scores(model, windows, metric=metric, batch_size=batch_size)
    removed = {
        name: sorted(torch.argsort(s, stable=True)[:k].tolist()) for name, s in scores.items()
    }
    before = _count(model)
    pruned = remove_experts(model, removed, inplace=inplace)
    return ExpertPruneResult(
        model=pruned,
        metric=metric,
        scores={n: s.tolist() for n, s in scores.items()},
        removed=removed,
        params_before=before,
        params_after=_count(pruned),
        seconds=time.perf_counter() - start,
    )
