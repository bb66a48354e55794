"""What streamed width pruning removes (:class:`StreamWidthConfig`) and how much from every block:
the allocation, decided from the architecture alone on a one-block stand-in of the model, as
:func:`prunekit.llm.width.prune_width` decides it for the whole model in memory."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError, check_sparsity
from prunekit.estimators import Estimator
from prunekit.graph import build_structural_groups
from prunekit.llm.blocks import find_blocks
from prunekit.llm.stream_skeleton import materialise
from prunekit.llm.width import (
    HEAD_LAYERS,
    MLP_LAYERS,
    Denominator,
    UnitKind,
    WidthAllocation,
    allocate,
    unit_kind,
    width_estimator,
)
from prunekit.llm.width_scores import UnitActivation

Propagate = Literal["pruned", "dense"]

PROXY_VOCAB = 16
"""Vocabulary of the one-block stand-in: its embeddings only feed tracing and verification."""


@dataclass(frozen=True)
class StreamWidthConfig:
    """What streamed width pruning removes.

    Attributes:
        width: fraction of the parameters removed, in [0, 1), of the blocks (``of="blocks"``)
            or of the whole model (``of="model"``); split by :func:`prunekit.llm.width.allocate`.
        heads / mlp: instead of ``width``, the head units (GQA: key/value heads with their
            query heads) and MLP neurons removed from every block.
        kinds: with ``width``, which units may go (``("heads", "mlp")``, or one of them).
        estimator: ``activation`` (default) or a data-free registry name (``magnitude``).
        round_to: kept MLP widths are multiples of this.
        propagate: the next block's inputs come from the ``pruned`` block or the ``dense`` one.
        verify: check each block's surgery against masking.
    """

    width: float | None = None
    heads: int | None = None
    mlp: int | None = None
    of: Denominator = "blocks"
    kinds: tuple[str, ...] = ("heads", "mlp")
    estimator: str = "activation"
    round_to: int = 8
    propagate: Propagate = "pruned"
    verify: bool = True
    head_layers: tuple[str, ...] = HEAD_LAYERS
    mlp_layers: tuple[str, ...] = MLP_LAYERS

    def __post_init__(self) -> None:
        counts = self.heads is not None or self.mlp is not None
        if (self.width is None) == (not counts):
            raise ConfigError(
                "streamed width pruning needs either width= (a fraction) or heads= / mlp= "
                "(units removed per block), not both"
            )
        if self.width is not None:
            object.__setattr__(self, "width", check_sparsity(self.width, "width"))
        for name in ("heads", "mlp"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ConfigError(f"{name} must be a count >= 0, got {value!r}")
        if self.of not in ("model", "blocks"):
            raise ConfigError(f"of must be 'model' or 'blocks', got {self.of!r}")
        if not self.kinds or set(self.kinds) - {"heads", "mlp"}:
            raise ConfigError(f"kinds must be 'heads' and/or 'mlp', got {list(self.kinds)}")
        if self.propagate not in ("pruned", "dense"):
            raise ConfigError(f"propagate must be 'pruned' or 'dense', got {self.propagate!r}")
        if self.round_to < 1:
            raise ConfigError(f"round_to must be at least 1, got {self.round_to}")
        self.build_estimator()

    def build_estimator(self) -> Estimator:
        """The estimator; one that needs gradients of the model's loss is refused."""
        estimator = width_estimator(self.estimator)
        if estimator.needs_data and not isinstance(estimator, UnitActivation):
            raise ConfigError(
                f"estimator {self.estimator!r} needs the loss at the model's output, which "
                "streaming (one block at a time) cannot compute; use 'activation' or a "
                "data-free estimator such as 'magnitude'"
            )
        return estimator

    def wants(self, kind: str) -> bool:
        if self.width is not None:
            return kind in self.kinds
        return bool(getattr(self, kind))


# --- the one-block stand-in -------------------------------------------------------------------


def build_proxy(model: nn.Module, hf_config: Any, index: int, dtype: torch.dtype) -> nn.Module:
    """A one-block model of ``model``'s architecture with block ``index``'s layer type: a
    ``PROXY_VOCAB`` vocabulary and seeded random tensors outside the block, the block on the
    meta device (filled with :func:`~prunekit.llm.stream_skeleton.materialise`)."""
    from accelerate import init_empty_weights

    config = copy.deepcopy(hf_config)
    config.num_hidden_layers = 1
    config.vocab_size = PROXY_VOCAB
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(config, attr, None) is not None:
            setattr(config, attr, None)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) > index:
        config.layer_types = [layer_types[index]]
    with init_empty_weights(include_buffers=False):
        proxy = type(model)(config)
    proxy.eval()
    block_prefix = find_blocks(proxy).prefix + "."
    generator = torch.Generator().manual_seed(0)
    outside = {}
    for name, param in proxy.named_parameters(remove_duplicate=False):
        if name.startswith(block_prefix):
            continue
        if param.dim() >= 2:
            value = torch.randn(tuple(param.shape), generator=generator) * 0.02
        else:
            value = torch.ones(tuple(param.shape))
        outside[name] = value.to(dtype)
    materialise(proxy, outside)
    return proxy


def proxy_example(proxy: nn.Module) -> dict[str, Tensor]:
    return {"input_ids": torch.arange(8, dtype=torch.long)[None] % PROXY_VOCAB}


def _per_model(kind: UnitKind, blocks: int) -> UnitKind:
    """One block's unit kind counted over ``blocks`` blocks."""
    return dataclasses.replace(kind, layers=blocks, unit_params=kind.unit_params * blocks)


def plan_allocation(
    proxy: nn.Module, config: StreamWidthConfig, blocks: int, denominator: int
) -> tuple[WidthAllocation, dict[str, float]]:
    """Trace the stand-in, find its head and MLP units, and allocate: ``width * denominator``
    parameters by :func:`~prunekit.llm.width.allocate`, or the given counts (checked). Returns
    the allocation and the per-pattern unit sparsities that realise it in every block."""
    groups = build_structural_groups(proxy, proxy_example(proxy))
    heads = mlp = None
    if config.wants("heads"):
        heads = _per_model(unit_kind("heads", groups, config.head_layers, 1), blocks)
    if config.wants("mlp"):
        mlp = _per_model(unit_kind("mlp", groups, config.mlp_layers, config.round_to), blocks)
    if config.width is not None:
        allocation = allocate(config.width * denominator, heads, mlp)
    else:
        allocation = _counted(config, heads, mlp)
    overrides = {
        pattern: removed / kind.units
        for kind, removed in ((heads, allocation.heads_removed), (mlp, allocation.mlp_removed))
        if kind is not None and removed > 0
        for pattern in kind.patterns
    }
    return allocation, overrides


def _counted(
    config: StreamWidthConfig, heads: UnitKind | None, mlp: UnitKind | None
) -> WidthAllocation:
    """The allocation of explicit per-block counts, refused where a block cannot have it."""
    h, m = config.heads or 0, config.mlp or 0
    if heads is not None and h >= heads.units:
        raise ConfigError(
            f"heads={h} removes every head unit: blocks have {heads.units} (key/value heads "
            f"with their query heads), so at most {heads.units - 1} can go"
        )
    if mlp is not None and m not in mlp.removals():
        raise ConfigError(
            f"mlp={m} leaves {mlp.units - m} of {mlp.units} MLP neurons per block; the kept "
            f"width must be a positive multiple of round_to={mlp.step}"
        )
    planned = (heads.params(h) if heads else 0) + (mlp.params(m) if mlp else 0)
    return WidthAllocation(
        heads.units if heads else 0, h, mlp.units if mlp else 0, m, planned, planned
    )
