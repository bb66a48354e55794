"""What structural pruning can do to a model, before anything is pruned.

:func:`inspect_model` traces the model the way structural pruning does
(:func:`~prunekit.graph.build_structural_groups`) and returns plain data: every dependency group
(its units, the tensor slices it couples, whether it is exact), every layer's parameters and
MACs, the totals, and the layers whose output units cannot be removed, with the reason. It never
changes the model, and it does not raise when the model cannot be traced: the error is recorded
in :attr:`Inspection.error` so that an inspection always shows something.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook
from torch.utils import _pytree as pytree

from prunekit.analysis.allocation import group_size
from prunekit.core.groups import Group
from prunekit.core.modes import eval_mode
from prunekit.errors import DataError
from prunekit.graph.atoms import FIXED
from prunekit.graph.build import StructuralGroups, groups_from_trace, unit_components
from prunekit.graph.tracer import StructureTrace, check_ignore, trace
from prunekit.measure.effective import effective_parameters
from prunekit.measure.inputs import call_model, describe_inputs
from prunekit.measure.macs import MacCount, count_macs
from prunekit.ops.rules import NOT_TARGETS, matches_any, rule_for
from prunekit.surgery.convert import replace_multihead_attention


@dataclass(frozen=True)
class MemberInfo:
    """One tensor slice of a group: ``tensor``'s dimension ``dim`` (of size ``size``), of which
    each unit covers ``per_unit`` positions (1 for a channel, the head size for a head).
    ``role`` is ``"out"`` for a layer's output units (weight rows, bias), ``"in"`` for its input
    features, ``""`` for anything else (normalisation entries, buffers). ``scored`` is False for
    buffers (BatchNorm running statistics)."""

    tensor: str
    dim: int
    size: int
    per_unit: int
    role: str
    scored: bool

    @property
    def module(self) -> str:
        return self.tensor.rpartition(".")[0]


@dataclass(frozen=True)
class GroupInfo:
    """A dependency group: ``n_units`` units removed together from every member.

    ``exact`` is False when removing units changes a normalisation over their dimension
    (LayerNorm, a mean), so zeroing them is not the same as removing them. ``params`` counts the
    parameter entries the group's units hold (all units together, buffers not counted).
    """

    name: str
    layer: str
    n_units: int
    exact: bool
    params: int
    members: tuple[MemberInfo, ...]

    @property
    def layers(self) -> tuple[str, ...]:
        """The modules whose tensors the group touches, in member order."""
        return tuple(dict.fromkeys(m.module for m in self.members))


@dataclass(frozen=True)
class LayerInfo:
    """A module that holds parameters of its own.

    ``macs`` is the work done by the module itself (children with parameters excluded), ``None``
    when MACs could not be counted. ``group`` is the group that removes the layer's output units
    (``None`` if none does); ``groups`` lists every group that touches one of its tensors.
    ``ruled`` is True when a layer rule knows its type (Linear, convolutions): only such layers
    have output units of their own.
    """

    name: str
    type: str
    params: int
    macs: int | None
    group: str | None
    groups: tuple[str, ...]
    ruled: bool


@dataclass(frozen=True)
class Blocked:
    """A layer whose output units cannot be removed, and why."""

    layer: str
    reason: str


@dataclass(frozen=True)
class Inspection:
    """Everything :func:`inspect_model` found, as plain data (``to_dict`` for JSON).

    Attributes:
        model: the model's class name.
        inputs: the example inputs, described by shape and dtype.
        params / macs: totals (``macs`` is ``None`` when the model did not run).
        groups / layers / blocked: see :class:`GroupInfo`, :class:`LayerInfo`, :class:`Blocked`.
        converted: ``nn.MultiheadAttention`` modules inspected as
            :class:`~prunekit.ops.mha.PrunableMultiheadAttention` (so heads are units, as
            structural pruning does); layer names below them are those of the conversion.
        exclude: the exclusion patterns the inspection honoured.
        error: why the model could not be run or traced (``"TypeName: message"``), or ``None``.
    """

    model: str
    inputs: str
    params: int
    macs: int | None
    groups: tuple[GroupInfo, ...]
    layers: tuple[LayerInfo, ...]
    blocked: tuple[Blocked, ...]
    converted: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    error: str | None = None

    @property
    def units(self) -> int:
        return sum(g.n_units for g in self.groups)

    @property
    def inexact(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups if not g.exact)

    @property
    def prunable_layers(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.group is not None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_model(
    model: nn.Module,
    example_inputs: Any,
    *,
    exclude: Sequence[str] = (),
    heads: bool = True,
) -> Inspection:
    """Inspect what structural pruning of ``model`` on ``example_inputs`` can remove.

    ``exclude`` holds module-name glob patterns whose outputs keep their width, as in
    structural pruning (a pattern that matches no module raises
    :class:`~prunekit.errors.ConfigError`). With ``heads`` (the default, as in pruning) every
    ``nn.MultiheadAttention`` is inspected as its prunable conversion, whose heads are units.
    If the model does not run on the inputs, or tracing refuses an operation, the error is
    recorded in the result and groups are left empty; parameter counts are always given.
    """
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    converted: tuple[str, ...] = ()
    if heads:  # a new module tree over the user's own tensors; the user's model is untouched
        model, converted = replace_multihead_attention(model, share_tensors=True)
    check_ignore(model, exclude)
    error: str | None = None
    count: MacCount | None = None
    outputs: set[str] = set()
    structure: StructureTrace | None = None
    groups = StructuralGroups([])
    try:
        count = count_macs(model, example_inputs)
        outputs = output_layers(model, example_inputs)
    except DataError as err:
        error = f"{type(err).__name__}: {err}"
    if count is not None:
        try:
            structure = trace(model, example_inputs, ignore=exclude)
            groups = groups_from_trace(model, structure)
        except Exception as err:  # recorded, not raised: inspection must show what it can
            error = f"{type(err).__name__}: {err}"
    infos = tuple(_group_info(model, g, g.name not in groups.inexact) for g in groups)
    layers = _layer_infos(model, count, infos)
    blocked = () if error else _blocked(model, layers, exclude, outputs, structure)
    return Inspection(
        model=type(model).__name__,
        inputs=describe_inputs(example_inputs),
        params=sum(t.numel() for t in effective_parameters(model).values()),
        macs=count.total if count is not None else None,
        groups=infos,
        layers=layers,
        blocked=blocked,
        converted=converted,
        exclude=exclude,
        error=error,
    )


def _role(model: nn.Module, tensor: str, dim: int) -> str:
    """``"out"`` / ``"in"`` when ``tensor`` is a ruled layer's weight or bias along its output /
    input dimension, else ``""``."""
    module_name, _, attr = tensor.rpartition(".")
    try:
        rule = rule_for(model.get_submodule(module_name))
    except AttributeError:
        return ""
    if rule is None:
        return ""
    if attr == rule.weight:
        return "out" if dim == rule.out_dim else "in" if dim == rule.in_dim else ""
    return "out" if attr in rule.out_params and dim == 0 else ""


def _group_info(model: nn.Module, group: Group, exact: bool) -> GroupInfo:
    members = []
    for m in group.members:
        view = m.view
        dim = int(getattr(view, "dim", 0))
        covered = int(view.counts().sum()) // max(1, _cross_section(view.shape, dim))
        members.append(
            MemberInfo(
                tensor=m.tensor,
                dim=dim,
                size=int(view.shape[dim]) if view.shape else 1,
                per_unit=covered // max(group.n_units, 1),
                role=_role(model, m.tensor, dim),
                scored=m.scored,
            )
        )
    params = int(group_size(group, "params"))
    return GroupInfo(group.name, group.layer, group.n_units, exact, params, tuple(members))


def _cross_section(shape: Sequence[int], dim: int) -> int:
    """Elements of a tensor of ``shape`` per position of ``dim``."""
    size = 1
    for d, n in enumerate(shape):
        if d != dim:
            size *= int(n)
    return size


def _param_layers(model: nn.Module) -> dict[str, int]:
    """Module name -> parameter entries it holds itself (masked weights once, shared once)."""
    layers: dict[str, int] = {}
    for name, t in effective_parameters(model).items():
        module = name.rpartition(".")[0]
        layers[module] = layers.get(module, 0) + t.numel()
    return layers


def _own_macs(model: nn.Module, count: MacCount, names: Sequence[str]) -> dict[str, int]:
    """Each listed module's MACs minus those of listed modules nested directly inside it."""
    aliases: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        aliases.setdefault(id(module), []).append(name)
    inclusive = {
        n: sum(count.by_module.get(a, 0) for a in aliases[id(model.get_submodule(n))])
        for n in names
    }
    own = dict(inclusive)
    for inner in names:
        outers = [o for o in names if o != inner and (o == "" or inner.startswith(o + "."))]
        if outers:
            own[max(outers, key=len)] -= inclusive[inner]
    return own


def _layer_infos(
    model: nn.Module, count: MacCount | None, groups: Sequence[GroupInfo]
) -> tuple[LayerInfo, ...]:
    params = _param_layers(model)
    order = [n for n, _ in model.named_modules() if n in params]
    order += [n for n in params if n not in order]  # parameters of parametrised modules
    macs = _own_macs(model, count, order) if count is not None else {}
    touching: dict[str, list[str]] = {}
    out_group: dict[tuple[str, int], str] = {}
    for g in groups:
        for m in g.members:
            touching.setdefault(m.module, []).append(g.name)
            out_group.setdefault((m.tensor, m.dim), g.name)
    infos = []
    for name in order:
        module = model.get_submodule(name)
        rule = rule_for(module)
        prefix = f"{name}." if name else ""
        group = out_group.get((prefix + rule.weight, rule.out_dim)) if rule else None
        infos.append(
            LayerInfo(
                name=name,
                type=type(module).__name__,
                params=params[name],
                macs=macs.get(name) if count is not None else None,
                group=group,
                groups=tuple(dict.fromkeys(touching.get(name, ()))),
                ruled=rule is not None,
            )
        )
    return tuple(infos)


def _blocked(
    model: nn.Module,
    layers: Sequence[LayerInfo],
    exclude: Sequence[str],
    outputs: set[str],
    structure: StructureTrace | None,
) -> tuple[Blocked, ...]:
    fixed = _fixed_tensor_dims(structure) if structure is not None else {}
    found = []
    for layer in layers:
        if layer.group is not None:
            continue
        module = model.get_submodule(layer.name)
        reason = _reason(layer, module, exclude, outputs, fixed, structure)
        if reason:
            found.append(Blocked(layer.name, reason))
    return tuple(found)


def _reason(
    layer: LayerInfo,
    module: nn.Module,
    exclude: Sequence[str],
    outputs: set[str],
    fixed: Mapping[tuple[str, int], bool],
    structure: StructureTrace | None,
) -> str | None:
    rule = rule_for(module)
    if isinstance(module, nn.MultiheadAttention):
        return "nn.MultiheadAttention: its heads become units only with heads=True"
    if rule is None and (isinstance(module, NOT_TARGETS) or layer.groups):
        return None  # a normalisation or embedding: it follows the groups it belongs to
    matched = [p for p in exclude if matches_any(layer.name, [p])]
    if matched:
        return f"excluded (matches {matched[0]!r})"
    if rule is None:
        return f"no pruning rule for its type {layer.type} and no group couples its parameters"
    if layer.name in outputs:
        return "its output is a model output (the model's output shape is kept)"
    weight = f"{layer.name}.{rule.weight}" if layer.name else rule.weight
    if structure is not None and weight not in structure.first_use:
        return "not used in the traced forward pass"
    if fixed.get((weight, rule.out_dim), False):
        return "its output width is fixed (it reaches a model output or a width written in code)"
    return "its output units are coupled with nothing that can be removed"


def _fixed_tensor_dims(structure: StructureTrace) -> dict[tuple[str, int], bool]:
    """(tensor, dim) -> True if any of its positions can never be removed."""
    comp = unit_components(structure)
    fixed = comp[FIXED]
    found = {}
    for fam in structure.families:
        atoms = comp[fam.start : fam.start + fam.size]
        found[(fam.tensor, fam.dim)] = bool(np.any(atoms == fixed))
    return found


@contextmanager
def _module_outputs(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Record the output tensors of every named module of ``model`` while the block runs."""
    names = {id(m): n for n, m in model.named_modules() if n}
    seen: dict[str, list[Tensor]] = {}

    def hook(module: nn.Module, args: object, output: object) -> None:
        name = names.get(id(module))
        if name is not None:
            seen[name] = [t for t in pytree.tree_leaves(output) if isinstance(t, Tensor)]

    handle = register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def output_layers(model: nn.Module, example_inputs: Any) -> set[str]:
    """The layers whose output tensor is returned by the model as it is (e.g. the classifier).

    Runs the model once in eval mode without gradients; a failure is a
    :class:`~prunekit.errors.DataError` naming the module.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with eval_mode(model), torch.no_grad(), _module_outputs(model) as seen:
            output = call_model(model, example_inputs, purpose="finding the output layers")
    returned = {id(t) for t in pytree.tree_leaves(output) if isinstance(t, Tensor)}
    return {name for name, ts in seen.items() if any(id(t) in returned for t in ts)}
