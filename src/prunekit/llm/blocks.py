"""Where a transformer's blocks are, what goes into block 0, and how to run one block alone.

Layer-by-layer pruning (SparseGPT, Wanda) never runs the whole model on the calibration data: it
captures the inputs of block 0 once (by stopping the forward pass as it enters the block), then
runs one block at a time. Where architectures keep their blocks is declared by the model family
adapters (:func:`prunekit.adapters.block_paths`); anything else is refused with the model's name
and the places that were searched.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.adapters import block_paths, is_normalisation
from prunekit.errors import DataError, UnsupportedLayerError
from prunekit.ops.rules import NOT_TARGETS, LayerRule, matches_any, prunable_layers, rule_for

BLOCK_PATHS: tuple[str, ...] = block_paths()
"""Attribute paths of the block list, tried in order (from the model family adapters)."""


@dataclass(frozen=True)
class BlockStack:
    """The transformer blocks of a model: ``prefix`` is their module path (``"model.layers"``)."""

    prefix: str
    blocks: nn.ModuleList

    def __len__(self) -> int:
        return len(self.blocks)

    def name(self, index: int) -> str:
        return f"{self.prefix}.{index}"

    def linears(
        self, index: int, include: Sequence[str] = ("*",), exclude: Sequence[str] = ()
    ) -> list[tuple[str, nn.Module, LayerRule]]:
        """The prunable layers of block ``index``, with fully qualified names.

        ``include`` / ``exclude`` are glob patterns on the fully qualified names.
        """
        block = self.blocks[index]
        prefix = self.name(index)
        _refuse_unknown_layers(block, prefix)
        found = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # norms are not targets; others refused above
            layers = list(prunable_layers(block))
        for name, module, rule in layers:
            full = f"{prefix}.{name}"
            if matches_any(full, include) and not matches_any(full, exclude):
                found.append((full, module, rule))
        return found


def _refuse_unknown_layers(block: nn.Module, prefix: str) -> None:
    """Refuse a layer with weights but no rule (e.g. GPT-2's Conv1D) instead of skipping it.

    Normalisation layers (LayerNorm, RMSNorm variants) and embeddings are not targets.
    """
    for name, module in block.named_modules():
        if "parametrizations" in name.split(".") or rule_for(module) is not None:
            continue
        own = any(True for _ in module.parameters(recurse=False))
        is_norm = isinstance(module, NOT_TARGETS) or is_normalisation(module)
        if own and not is_norm:
            where = f"{prefix}.{name}" if name else prefix
            raise UnsupportedLayerError(
                f"layer {where} ({type(module).__name__}) has weights but no pruning "
                "rule; declare one with prunekit.ops.LAYER_RULES.register(...) or use an "
                "architecture whose blocks are made of nn.Linear"
            )


def find_blocks(model: nn.Module, path: str | None = None) -> BlockStack:
    """The block list of ``model``, at ``path`` or at the first of :data:`BLOCK_PATHS` found."""
    paths = (path,) if path else BLOCK_PATHS
    for candidate in paths:
        try:
            found = model.get_submodule(candidate)
        except AttributeError:
            continue
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            return BlockStack(candidate, found)
    raise UnsupportedLayerError(
        f"model {type(model).__name__} has no list of transformer blocks at "
        f"{', '.join(repr(p) for p in paths)}; layer-by-layer pruning needs one "
        "(pass blocks='path.to.ModuleList' for another architecture)"
    )


@dataclass
class BlockInputs:
    """What one block receives for each calibration window: the hidden states
    ``[n, seq, hidden]`` and the other arguments (attention mask, rotary embeddings, …)."""

    hidden: Tensor
    args: list[tuple[Any, ...]]
    kwargs: list[dict[str, Any]]

    def __len__(self) -> int:
        return int(self.hidden.shape[0])


class _BlockEnteredError(Exception):
    """Raised by the capture hook to stop the forward pass at block 0."""


def _forward_options(model: nn.Module) -> dict[str, Any]:
    params = inspect.signature(model.forward).parameters
    return {"use_cache": False} if "use_cache" in params else {}


def capture_block_inputs(model: nn.Module, stack: BlockStack, windows: Tensor) -> BlockInputs:
    """Run the model on each ``[seq]`` row of ``windows`` up to block 0 and keep its inputs."""
    if windows.dim() != 2 or windows.shape[0] == 0:
        raise DataError(
            f"calibration windows must be a non-empty [n, seq_len] tensor of token ids, "
            f"got shape {tuple(windows.shape)}"
        )
    hidden: list[Tensor] = []
    args: list[tuple[Any, ...]] = []
    kwargs: list[dict[str, Any]] = []

    def hook(module: nn.Module, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if a:
            hidden.append(a[0].detach())
            args.append(tuple(a[1:]))
            kwargs.append(dict(kw))
        else:
            rest = dict(kw)
            hidden.append(rest.pop("hidden_states").detach())
            args.append(())
            kwargs.append(rest)
        raise _BlockEnteredError

    device = next(model.parameters()).device
    options = _forward_options(model)
    handle = stack.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for row in windows:
                try:
                    model(row[None].to(device), **options)
                except _BlockEnteredError:
                    continue
                raise UnsupportedLayerError(
                    f"the forward pass of {type(model).__name__} never reached block "
                    f"{stack.name(0)!r}; it cannot be pruned layer by layer"
                )
    finally:
        handle.remove()
    return BlockInputs(torch.cat(hidden), args, kwargs)


def run_block(block: nn.Module, inputs: BlockInputs) -> Iterator[Tensor]:
    """The block's output hidden states, one ``[1, seq, hidden]`` tensor per window."""
    with torch.no_grad():
        for j in range(len(inputs)):
            out = block(inputs.hidden[j : j + 1], *inputs.args[j], **inputs.kwargs[j])
            yield out[0] if isinstance(out, (tuple, list)) else out


def advance(block: nn.Module, inputs: BlockInputs) -> BlockInputs:
    """The inputs of the next block: ``block``'s outputs, written over the hidden states."""
    for j, out in enumerate(run_block(block, inputs)):
        inputs.hidden[j : j + 1] = out
    return inputs
