"""Example inputs and outputs as flat lists of tensors, and inputs at another batch size.

Inputs follow :mod:`prunekit.measure.inputs`: a tuple is positional arguments, a mapping keyword
arguments, anything else the single argument. Exporters see only the tensors, in that order
(positional first, then keywords); outputs are flattened the same way (tuples, lists, mappings
such as Hugging Face ``ModelOutput``, ``None`` dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunekit.export.report import ExportError
from prunekit.measure import ExampleInputs


def as_call(inputs: ExampleInputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of a call on ``inputs``."""
    if isinstance(inputs, tuple):
        return inputs, {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    return (inputs,), {}


def input_tensors(inputs: ExampleInputs) -> list[Tensor]:
    """The tensors among the arguments, positional first, in the order an exporter sees them."""
    args, kwargs = as_call(inputs)
    return [v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)]


def flat_outputs(output: Any) -> list[Tensor]:
    """Every tensor of a model's output, depth first."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, Mapping):
        values: list[Any] = list(output.values())
    elif isinstance(output, (tuple, list)):
        values = list(output)
    else:
        return []
    return [t for value in values for t in flat_outputs(value)]


def batch_size(inputs: ExampleInputs) -> int:
    """The size of dimension 0 of the first input tensor."""
    for tensor in input_tensors(inputs):
        if tensor.dim() >= 1:
            return int(tensor.shape[0])
    raise ExportError("example_inputs hold no tensor with a batch dimension (dimension 0)")


def with_batch(inputs: ExampleInputs, size: int, seed: int = 0) -> ExampleInputs:
    """``inputs`` at batch size ``size``: floating tensors are drawn anew with the example's
    mean and standard deviation, other tensors (token ids, masks) repeat the example's rows."""
    if size < 1:
        raise ExportError(f"batch size must be >= 1, got {size}")
    old = batch_size(inputs)
    generator = torch.Generator().manual_seed(seed)

    def resize(value: Any) -> Any:
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != old:
            return value
        if value.is_floating_point():
            fresh = torch.randn((size, *value.shape[1:]), generator=generator)
            spread = value.std() if value.numel() > 1 else value.new_tensor(1.0)
            return (fresh.to(value.dtype) * spread + value.mean()).to(value.device)
        return value[torch.arange(size, device=value.device) % old]

    args, kwargs = as_call(inputs)
    if isinstance(inputs, tuple):
        return tuple(resize(v) for v in args)
    if isinstance(inputs, Mapping):
        return {k: resize(v) for k, v in kwargs.items()}
    return resize(inputs)


def other_batch(size: int) -> int:
    """A batch size different from ``size`` for the dynamic-batch check (3, or 2 after 3)."""
    return 2 if size == 3 else 3


def to_numpy(tensors: list[Tensor]) -> list[np.ndarray]:
    return [t.detach().cpu().contiguous().numpy() for t in tensors]
