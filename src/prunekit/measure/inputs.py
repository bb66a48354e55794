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

from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from prunekit.core.modes import eval_mode as eval_mode  # re-exported for callers of measure.inputs
from prunekit.errors import DataError

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
