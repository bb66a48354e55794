"""Physical surgery: slice the tensors a selection removes and update the layers' widths."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.core.groups import Group, Selection
from prunekit.errors import ConfigError, SaveFileError
from prunekit.ops.shrink import shrink_rule_for
from prunekit.ops.shrink_hf import update_hf_config
from prunekit.surgery.blocks import blocks_memo, replace_blocks
from prunekit.surgery.convert import conversions_of, convert_in_place, converted_copy
from prunekit.surgery.plan import Plan, TensorCut, make_plan

Owner = tuple[str, nn.Module, str, bool]
WidthChanges = dict[str, dict[str, list[object]]]
"""Module name -> ``{"type": [class name], attribute: [before, after], ...}``."""
"""(module name, module, attribute, is a parameter)"""


def _owners(model: nn.Module) -> dict[int, list[Owner]]:
    """Every (module, attribute) holding each tensor, by tensor identity (tied weights share)."""
    found: dict[int, list[Owner]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for attr, p in module._parameters.items():
            if p is not None:
                found.setdefault(id(p), []).append((name, module, attr, True))
        for attr, b in module._buffers.items():
            if b is not None:
                found.setdefault(id(b), []).append((name, module, attr, False))
    return found


def _tensor_names(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, tuple[str, ...]]]:
    """Tensors by their first name, and the other names of tied tensors."""
    first: dict[int, str] = {}
    tensors: dict[str, Tensor] = {}
    aliases: dict[str, list[str]] = {}
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for name, t in named:
        if id(t) in first:
            aliases[first[id(t)]].append(name)
            continue
        first[id(t)] = name
        tensors[name] = t
        aliases[name] = []
    return tensors, {n: tuple(a) for n, a in aliases.items()}


def _slice(t: Tensor, cut: TensorCut) -> Tensor:
    """The kept slice of ``t``, a new tensor (``index_select`` copies; a cut that removes
    nothing is cloned)."""
    out = t.detach()
    for dim in sorted(cut.removed):
        index = cut.kept_index(dim).to(t.device)
        out = out.index_select(dim, index)
    return out.clone() if out.data_ptr() == t.data_ptr() else out


def _resolve(model: nn.Module, plan: Plan) -> list[tuple[TensorCut, Tensor]]:
    """The model's tensor for every cut of ``plan``, each checked before anything changes."""
    tensors, _ = _tensor_names(model)
    owners = _owners(model)
    resolved: list[tuple[TensorCut, Tensor]] = []
    for name, cut in plan.tensors.items():
        t = tensors.get(name)
        if t is None:
            raise SaveFileError(f"the plan names tensor {name!r}, which the model does not have")
        if tuple(t.shape) != cut.shape_before:
            raise SaveFileError(
                f"tensor {name!r} has shape {tuple(t.shape)}, the plan expects "
                f"{cut.shape_before}: the plan was made for a different model"
            )
        for _, module, attr, _ in owners[id(t)]:
            if parametrize.is_parametrized(module, attr):
                raise ConfigError(
                    f"tensor {cut.tensor!r} is masked (parametrized); bake or remove the masks "
                    "before surgery"
                )
        resolved.append((cut, t))
    return resolved


def _replacement(t: Tensor, cut: TensorCut) -> Tensor:
    new = _slice(t, cut)
    return nn.Parameter(new, t.requires_grad) if isinstance(t, nn.Parameter) else new


def apply_plan(model: nn.Module, plan: Plan) -> dict[str, dict[str, list[object]]]:
    """Apply ``plan`` to ``model`` in place; return the width attributes changed per module.

    The plan's module conversions are made first (``nn.MultiheadAttention`` -> its
    head-prunable replacement); every tensor is checked against the plan before any is cut,
    and a failed check undoes the conversions. Whole blocks the plan removes (layer
    granularity) are replaced before anything else, all checked first."""
    replace_blocks(model, plan.blocks)
    undo = convert_in_place(model, plan.convert)
    try:
        resolved = _resolve(model, plan)
    except Exception:
        undo()
        raise
    owners = _owners(model)
    touched: dict[str, nn.Module] = {}
    for cut, t in resolved:
        # one replacement object for every owner, so tied tensors stay tied
        replacement = _replacement(t, cut)
        for module_name, module, attr, is_param in owners[id(t)]:
            if is_param:
                module._parameters[attr] = replacement  # type: ignore[assignment]
            else:
                module._buffers[attr] = replacement
            touched[module_name] = module
    return _shrink(model, touched)


def pruned_copy(
    model: nn.Module, plan: Plan
) -> tuple[nn.Module, dict[str, dict[str, list[object]]]]:
    """A copy of ``model`` with ``plan`` applied, and the width attributes changed per module.

    The tensors the plan cuts are never copied whole: the copy receives their kept slices
    directly (through ``deepcopy``'s memo, so tied tensors stay tied). With module conversions
    in the plan, the converted copy is cut in place instead. Removed blocks are never copied:
    the copy holds their stand-ins (see :mod:`prunekit.surgery.blocks`)."""
    if plan.blocks:
        staged = copy.deepcopy(model, blocks_memo(model, plan.blocks))
        return staged, apply_plan(staged, dataclasses.replace(plan, blocks={}))
    converted = converted_copy(model, plan.convert)
    if converted is not model:
        return converted, apply_plan(converted, plan)
    resolved = _resolve(model, plan)
    owners = _owners(model)
    memo: dict[int, Any] = {id(t): _replacement(t, cut) for cut, t in resolved}
    pruned = copy.deepcopy(model, memo)
    modules = dict(pruned.named_modules(remove_duplicate=False))
    touched = {name: modules[name] for _, t in resolved for name, *_ in owners[id(t)]}
    return pruned, _shrink(pruned, touched)


def _shrink(model: nn.Module, touched: dict[str, nn.Module]) -> dict[str, dict[str, list[object]]]:
    """Apply the shrink rule of every touched module, then of their ancestors (attention
    modules hold head counts of their child projections, innermost first), then update a
    Hugging Face ``config``."""
    modules = dict(model.named_modules(remove_duplicate=False))
    names = set(touched)
    for name in touched:
        parts = name.split(".") if name else []
        names.update(".".join(parts[:k]) for k in range(len(parts)))
    changes: dict[str, dict[str, list[object]]] = {}
    for module_name in sorted(names, key=lambda n: (-n.count("."), n) if n else (1, "")):
        module = modules.get(module_name)
        rule = shrink_rule_for(module) if module is not None else None
        if module is None or rule is None:
            continue
        _record(changes, module_name, module, rule.update(module))
    _record(changes, "", model, {f"config.{k}": v for k, v in update_hf_config(model).items()})
    return changes


def _record(
    changes: dict[str, dict[str, list[object]]],
    name: str,
    module: nn.Module,
    changed: dict[str, tuple[object, object]],
) -> None:
    if changed:
        entry = changes.setdefault(name, {"type": [type(module).__name__]})
        entry.update({a: [_plain(v0), _plain(v1)] for a, (v0, v1) in changed.items()})


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def apply_surgery(
    model: nn.Module, groups: Sequence[Group], selection: Selection
) -> tuple[nn.Module, Plan]:
    """Physically remove every unit ``selection`` does not keep, in a copy of ``model``.

    Returns the pruned copy and the :class:`Plan`. The input model is never modified, so a
    failure leaves it as it was.
    """
    tensors, aliases = _tensor_names(model)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    missing = sorted({m.tensor for g in groups for m in g.members} - set(shapes))
    if missing:
        raise ConfigError(f"groups name tensors the model does not have: {missing[:5]}")
    plan = make_plan(groups, selection, shapes, aliases)
    plan.convert = conversions_of(model)
    pruned, plan.modules = pruned_copy(model, plan)
    return pruned, plan


def rebuild(original: nn.Module, plan: Plan) -> nn.Module:
    """A copy of ``original`` with the pruned shapes of ``plan`` (weights are the kept slices of
    the original's; a loader then overwrites them with the saved ones)."""
    return pruned_copy(original, plan)[0]


def rebuild_hook(model: nn.Module, plan: Plan | Mapping[str, Any]) -> nn.Module:
    """The hook save/load calls: accepts a :class:`Plan` or its ``to_dict()`` form."""
    return rebuild(model, plan if isinstance(plan, Plan) else Plan.from_dict(plan))
