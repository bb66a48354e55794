"""Physical surgery: slice the tensors a selection removes and update the layers' widths."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.core.groups import Group, Selection
from prunekit.errors import ConfigError, SaveFileError
from prunekit.ops.shrink import shrink_rule_for
from prunekit.surgery.plan import Plan, TensorCut, make_plan

Owner = tuple[str, nn.Module, str, bool]
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
    out = t.detach()
    for dim in sorted(cut.removed):
        index = torch.tensor(cut.kept(dim), dtype=torch.long, device=t.device)
        out = out.index_select(dim, index)
    return out.clone()


def apply_plan(model: nn.Module, plan: Plan) -> dict[str, dict[str, list[object]]]:
    """Apply ``plan`` to ``model`` in place; return the width attributes changed per module.

    Every tensor is checked against the plan before anything changes."""
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
        resolved.append((cut, t))
    touched: dict[str, nn.Module] = {}
    for cut, t in resolved:
        for _, module, attr, _ in owners[id(t)]:
            if parametrize.is_parametrized(module, attr):
                raise ConfigError(
                    f"tensor {cut.tensor!r} is masked (parametrized); bake or remove the masks "
                    "before surgery"
                )
    for cut, t in resolved:
        new = _slice(t, cut)
        # one replacement object for every owner, so tied tensors stay tied
        replacement = nn.Parameter(new, t.requires_grad) if isinstance(t, nn.Parameter) else new
        for module_name, module, attr, is_param in owners[id(t)]:
            if is_param:
                module._parameters[attr] = replacement  # type: ignore[assignment]
            else:
                module._buffers[attr] = replacement
            touched[module_name] = module
    changes: dict[str, dict[str, list[object]]] = {}
    for module_name, module in touched.items():
        rule = shrink_rule_for(module)
        if rule is None:
            continue
        changed = rule.update(module)
        if changed:
            changes[module_name] = {
                "type": [type(module).__name__],
                **{a: [_plain(v0), _plain(v1)] for a, (v0, v1) in changed.items()},
            }
    return changes


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
    pruned = copy.deepcopy(model)
    plan.modules = apply_plan(pruned, plan)
    return pruned, plan


def rebuild(original: nn.Module, plan: Plan) -> nn.Module:
    """A copy of ``original`` with the pruned shapes of ``plan`` (weights are the kept slices of
    the original's; a loader then overwrites them with the saved ones)."""
    pruned = copy.deepcopy(original)
    apply_plan(pruned, plan)
    return pruned


def rebuild_hook(model: nn.Module, plan: Plan | dict[str, object]) -> nn.Module:
    """The hook save/load calls: accepts a :class:`Plan` or its ``to_dict()`` form."""
    return rebuild(model, plan if isinstance(plan, Plan) else Plan.from_dict(plan))
