"""Module conversions that make more units prunable, done before tracing and replayed from a
plan.

``nn.MultiheadAttention`` cannot lose heads (its inner width is tied to its input's), so
structural pruning first replaces every one, in a copy of the user's model, by a
:class:`~prunekit.ops.mha.PrunableMultiheadAttention` computing the same function (same
outputs to float rounding) whose heads are units. The plan records the converted modules
(``plan.convert``: module name -> class name), and :func:`prunekit.surgery.rebuild` converts
them again in a copy of the original architecture before it cuts, which is how such a model
saves and loads. This module is the one place that converts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from prunekit.errors import ConfigError, SaveFileError
from prunekit.ops.mha import PrunableMultiheadAttention, from_mha

CONVERTED_CLASS = PrunableMultiheadAttention.__name__
"""The class name a plan records for a converted attention module."""


def module_names(model: nn.Module, cls: type[nn.Module]) -> tuple[str, ...]:
    """Names of the ``cls`` modules of ``model`` (a module used twice: its first name)."""
    return tuple(n for n, m in model.named_modules() if isinstance(m, cls))


def _targets(model: nn.Module, names: Iterable[str] | None) -> dict[int, nn.MultiheadAttention]:
    """The ``nn.MultiheadAttention`` modules to convert, by identity; ``names`` that are
    already :class:`PrunableMultiheadAttention` are skipped, any other is an error."""
    modules = dict(model.named_modules(remove_duplicate=False))
    chosen = module_names(model, nn.MultiheadAttention) if names is None else tuple(names)
    found: dict[int, nn.MultiheadAttention] = {}
    for name in chosen:
        module = modules.get(name)
        if isinstance(module, nn.MultiheadAttention):
            found[id(module)] = module
        elif not isinstance(module, PrunableMultiheadAttention):
            what = type(module).__name__ if module is not None else "no module"
            raise ConfigError(
                f"module {name!r} should be an nn.MultiheadAttention to convert, found {what}"
            )
    return found


def replace_multihead_attention(
    model: nn.Module, names: Iterable[str] | None = None, *, share_tensors: bool = False
) -> tuple[nn.Module, tuple[str, ...]]:
    """A copy of ``model`` whose ``nn.MultiheadAttention`` modules (``names``, default every
    one) are :func:`~prunekit.ops.mha.from_mha` conversions, and the names converted.
    ``model`` is untouched; without anything to convert, it is returned as it is.

    With ``share_tensors`` the copy holds ``model``'s own parameters and buffers, and the
    converted projections are views of the fused ones (only the module tree is new): a cheap
    working copy for stages that only read it, as structural pruning's are.

    ``nn.TransformerEncoder`` stacks holding a converted module stop using nested tensors
    (only PyTorch's fused layers can; without them, outputs at padded positions are computed
    instead of being returned as zeros)."""
    targets = _targets(model, names)
    if not targets:
        return model, ()
    # deepcopy takes the conversions from its memo: the old projections are not copied
    memo: dict[int, Any] = {
        key: from_mha(mha, share_tensors=share_tensors) for key, mha in targets.items()
    }
    if share_tensors:
        tensors = [*model.parameters(), *model.buffers()]
        memo.update({id(t): t for t in tensors})
    replica = copy.deepcopy(model, memo)
    _no_nested_tensors(replica)
    converted = {id(memo[key]) for key in targets}
    return replica, tuple(n for n, m in replica.named_modules() if id(m) in converted)


def replace_multihead_attention_(
    model: nn.Module, names: Iterable[str] | None = None
) -> Callable[[], None]:
    """:func:`replace_multihead_attention` in place; returns a function that undoes it."""
    targets = _targets(model, names)
    undo_swap = _swap(model, {key: from_mha(mha) for key, mha in targets.items()})
    undo_nested = _no_nested_tensors(model)

    def undo() -> None:
        undo_nested()
        undo_swap()

    return undo


def _swap(model: nn.Module, new: Mapping[int, nn.Module]) -> Callable[[], None]:
    """Put ``new[id(child)]`` in place of every such child (every name of a shared one)."""
    swapped = []
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in new:
                setattr(parent, child_name, new[id(child)])
                swapped.append((parent, child_name, child))

    def undo() -> None:
        for parent, child_name, child in swapped:
            setattr(parent, child_name, child)

    return undo


def _no_nested_tensors(model: nn.Module) -> Callable[[], None]:
    """Turn nested tensors off in encoder stacks holding a converted module."""
    changed = [
        module
        for module in model.modules()
        if isinstance(module, nn.TransformerEncoder)
        and getattr(module, "use_nested_tensor", False)
        and any(isinstance(m, PrunableMultiheadAttention) for m in module.modules())
    ]
    for module in changed:
        module.use_nested_tensor = False

    def undo() -> None:
        for module in changed:
            module.use_nested_tensor = True

    return undo


def conversions_of(model: nn.Module) -> dict[str, str]:
    """What a plan records: every :class:`PrunableMultiheadAttention` of ``model``. Replaying
    it converts the ``nn.MultiheadAttention`` found there and keeps one already converted."""
    return dict.fromkeys(module_names(model, PrunableMultiheadAttention), CONVERTED_CLASS)


def _plan_names(convert: Mapping[str, str]) -> tuple[str, ...]:
    unknown = sorted({c for c in convert.values() if c != CONVERTED_CLASS})
    if unknown:
        raise SaveFileError(
            f"the plan converts modules to {unknown}; prunekit knows only {CONVERTED_CLASS!r}"
        )
    return tuple(convert)


def converted_copy(model: nn.Module, convert: Mapping[str, str]) -> nn.Module:
    """A copy of ``model`` with the plan's conversions (``model`` itself if there are none)."""
    try:
        return replace_multihead_attention(model, _plan_names(convert))[0] if convert else model
    except ConfigError as err:
        raise SaveFileError(f"{err}: the plan was made for a different model") from err


def convert_in_place(model: nn.Module, convert: Mapping[str, str]) -> Callable[[], None]:
    """Apply the plan's conversions to ``model`` itself; returns the undo."""
    try:
        return replace_multihead_attention_(model, _plan_names(convert))
    except ConfigError as err:
        raise SaveFileError(f"{err}: the plan was made for a different model") from err
