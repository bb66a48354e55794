"""Calling a model on example inputs for measurement, without changing it.

Example inputs follow one convention across :mod:`prunekit.measure`: a ``tuple`` is unpacked into
positional arguments, a mapping into keyword arguments (Hugging Face style), and anything else
(a tensor, a list) is passed as the single positional argument. Measurement runs the model in eval
mode (so dropout is off and BatchNorm running statistics are not updated) and restores every
submodule's own train/eval flag afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils import _pytree as pytree

from prunekit.core.modes import eval_mode as eval_mode  # re-exported for callers of measure.inputs
from prunekit.errors import DataError
from prunekit.graph.finite import check_finite
from prunekit.graph.running import call_with, meta_state

ExampleInputs = Tensor | tuple[Any, ...] | list[Any] | Mapping[str, Any]
"""A tensor (one argument), a tuple (positional arguments) or a mapping (keyword arguments)."""


def describe_inputs(inputs: object) -> str:
    """A short description of example inputs for error messages (shapes, not values)."""
    if isinstance(inputs, Tensor):
        return f"Tensor{tuple(inputs.shape)} {str(inputs.dtype).removeprefix('torch.')}"
    if isinstance(inputs, Mapping):
        inner = ", ".join(f"{k}={describe_inputs(v)}" for k, v in inputs.items())
        return "{" + inner + "}"
    if isinstance(inputs, (tuple, list)):
        inner = ", ".join(describe_inputs(v) for v in inputs)
        return f"({inner})" if isinstance(inputs, tuple) else f"[{inner}]"
    return type(inputs).__name__


@contextmanager
def _module_stack(model: nn.Module) -> Iterator[list[str]]:
    """The names of ``model``'s modules whose forward is running, outermost first.

    Uses PyTorch's global module hooks for the block only (the model's own hooks are untouched);
    after an exception the list still holds the path to the module that raised.
    """
    names = {id(module): name for name, module in model.named_modules()}
    stack: list[str] = []

    def enter(module: nn.Module, args: object) -> None:
        if id(module) in names:
            stack.append(names[id(module)])

    def leave(module: nn.Module, args: object, output: object) -> None:
        if id(module) in names and stack:
            stack.pop()

    handles = [register_module_forward_pre_hook(enter), register_module_forward_hook(leave)]
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def forward(model: nn.Module, inputs: ExampleInputs) -> Any:
    """``model`` called on ``inputs`` by the convention of this module, with no checks."""
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def call_model(model: nn.Module, inputs: ExampleInputs, *, purpose: str) -> Any:
    """Run ``model`` on ``inputs``; a failure becomes a :class:`DataError` naming the module.

    ``purpose`` says what the call was for (e.g. ``"counting MACs"``) and appears in the message.
    """
    if inputs is None:
        raise DataError(f"{purpose}: example_inputs is None; pass the tensor(s) the model takes")
    with _module_stack(model) as stack:
        try:
            return forward(model, inputs)
        except Exception as err:
            where = stack[-1] if stack else ""
            place = f"in module {where!r}" if where else "in the model's own forward"
            raise DataError(
                f"{purpose}: {type(model).__name__} failed on example_inputs "
                f"{describe_inputs(inputs)} {place}: {type(err).__name__}: {err}"
            ) from err


def _expectation(module: nn.Module) -> str:
    """What ``module`` takes, in words, for the layers whose inputs are usually model inputs."""
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = ", ".join(["N", str(module.in_channels), *"DHW"[3 - len(module.kernel_size) :]])
        return f"({dims})"
    if isinstance(module, nn.Linear):
        return f"(..., {module.in_features})"
    if isinstance(module, nn.Embedding):
        return f"integer ids in [0, {module.num_embeddings})"
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        return f"(..., {', '.join(map(str, module.normalized_shape))})"
    return ""


def _devices(model: nn.Module) -> set[torch.device]:
    return {t.device for t in (*model.parameters(), *model.buffers())}


def check_example_inputs(model: nn.Module, inputs: ExampleInputs) -> None:
    """Raise a one-line :class:`DataError` naming expected vs given when ``inputs`` cannot be
    ``model``'s inputs: tensors on another device than the model's, or a shape or dtype the
    module that receives them rejects. The model runs on ``meta`` stand-ins of its tensors
    (nothing is computed or changed); a model that cannot run on ``meta`` (it reads values,
    e.g. ``.item()``) is not checked further."""
    if inputs is None:
        raise DataError("example_inputs is None; pass the tensor(s) the model takes")
    check_finite(inputs, "example inputs")  # refused before anything runs
    leaves = [v for v in pytree.tree_leaves(inputs) if isinstance(v, Tensor)]
    devices = _devices(model)
    given = {v.device for v in leaves}
    if len(devices) == 1 and given and given != devices and "meta" not in str(devices):
        raise DataError(
            f"example_inputs are on {sorted(map(str, given))}, the model on "
            f"{next(iter(devices))}: move them to the model's device"
        )
    error = _meta_failure(model, inputs)
    if error is None:
        return
    err, where = error
    module = model.get_submodule(where) if where else model
    expected = _expectation(module)
    dtype = next((t.dtype for t in model.parameters() if t.is_floating_point()), None)
    floats = dtype is not None and not isinstance(module, nn.Embedding)
    wants = f"expects {expected}" + (f" {str(dtype).removeprefix('torch.')}" if floats else "")
    place = f"module {where!r} ({type(module).__name__})" if where else type(model).__name__
    raise DataError(
        f"example_inputs do not fit the model: {place} "
        f"{wants if expected else 'rejects them'}, given {describe_inputs(inputs)} "
        f"({str(err).splitlines()[0][:160]})"
    )


def _meta_failure(model: nn.Module, inputs: ExampleInputs) -> tuple[Exception, str] | None:
    """The error running ``model`` on meta stand-ins raises, if it looks like an input mismatch
    (a ``RuntimeError``/``ValueError``/``IndexError`` from a module), and the module's name."""
    state = meta_state(model)
    meta = pytree.tree_map(lambda v: v.to("meta") if isinstance(v, Tensor) else v, inputs)
    with eval_mode(model), torch.no_grad(), _module_stack(model) as stack:
        try:  # call_with puts every original tensor back, aliased modules included
            call_with(model, state, meta)
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            if "meta" in str(err).lower() or "data-dependent" in str(err).lower() or not stack:
                return None  # the model reads values: meta cannot tell
            return err, stack[-1]
        except Exception:
            return None
    return None
