"""The kept-units reference: a masked model whose normalisations see only the kept units.

Zeroing a unit is the same as removing it everywhere except under a normalisation that reduces
over the pruned dimension (LayerNorm, RMSNorm, GroupNorm with one group, a ``mean``): there the
zeros still count in the statistics, while the pruned model normalises over the kept units only.
So for those groups the reference is the masked original in which every such normalisation
(:class:`~prunekit.graph.norms.Normalisation`, recorded by the trace) is replaced by
:class:`KeptUnits`: it gathers the kept positions of its input along the normalised dimension,
runs a copy of the normalisation module whose affine tensors are sliced to those positions, and
scatters the result back with zeros at the removed positions (what the masked model has there:
the affine weight and bias of a removed unit are zero).

The kept positions and the sliced tensors come from the trace's units, not from the groups'
views that surgery slices with, so a wrong index in surgery still shows as a mismatch.

Two ways to build the masked model. :func:`masked_reference` (fast verification) copies no
tensor: the reference runs the original's own tensors under :class:`MaskedRun`, which multiplies
each masked tensor by its 0/1 factors when an operation reads it (one tensor at a time, freed
after use); the factors are per dimension (a channel mask is a vector, not a copy of the
weight). Only the modules wrapped by :class:`KeptUnits` get masked copies of their own tensors.
The exhaustive check uses a masked deep copy instead (:func:`prunekit.surgery.verify.masked_copy`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from prunekit.core.groups import Group, Selection, get_tensor
from prunekit.core.views import AxisView, IndexView, UnitView
from prunekit.errors import PrunekitError
from prunekit.graph.norms import Normalisation
from prunekit.ops.shrink import shrink_rule_for

Factors = dict[int, tuple[Tensor, tuple[Tensor, ...]]]
"""``id(tensor) -> (tensor, 0/1 factors)``: the masked tensor is the product of the tensor and
its factors, each broadcastable to its shape (one vector per masked dimension)."""

HALF_TYPES = (torch.float16, torch.bfloat16)


class KeptUnitsError(PrunekitError, RuntimeError):
    """The kept-units reference of these groups could not be run (a limit of the reference,
    not an error of the pruned model): they are reported unverified."""

    def __init__(self, message: str, groups: Collection[str]) -> None:
        super().__init__(message)
        self.groups = frozenset(groups)


class KeptUnits(nn.Module):
    """Runs ``inner`` on the kept positions of its inputs along one dimension each and puts
    its output back at those positions, with zeros at the removed ones.

    ``inputs`` lists ``(positional argument, dim)``; the output must have the shape of the
    first gathered input (a normalisation keeps the shape)."""

    kept: Tensor

    def __init__(
        self, inner: nn.Module, inputs: Sequence[tuple[int, int]], kept: Tensor, norm: Normalisation
    ) -> None:
        super().__init__()
        self.inner = inner
        self.inputs = tuple(inputs)
        self.size = kept.numel()
        self.register_buffer("kept", kept.nonzero().flatten(), persistent=False)
        self.norm = norm

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        gathered = list(args)
        for i, dim in self.inputs:
            x = gathered[i] if i < len(gathered) else None
            if not isinstance(x, Tensor) or x.dim() <= dim or x.shape[dim] != self.size:
                raise self._error(f"its input {i} has no dim {dim} of size {self.size}")
            gathered[i] = x.index_select(dim, self.kept)
        try:
            out = self.inner(*gathered, **kwargs)
        except KeptUnitsError:
            raise
        except Exception as err:
            raise self._error(f"it fails on the kept units ({type(err).__name__}: {err})") from err
        if not self.norm.through:  # standardised weights: the output is not indexed by the units
            return out
        first, dim = self.inputs[0]
        if not isinstance(out, Tensor) or out.shape != gathered[first].shape:
            raise self._error("its output does not have its input's shape")
        shape = list(out.shape)
        shape[dim] = self.size
        return out.new_zeros(shape).index_copy(dim, self.kept, out)

    def _error(self, what: str) -> KeptUnitsError:
        return KeptUnitsError(
            f"cannot run the normalisation {self.norm.op} of module {self.norm.module!r} on the "
            f"kept units: {what}",
            self.norm.groups,
        )


def coverage(
    normalisations: Sequence[Normalisation], groups: Collection[str]
) -> dict[str, str | None]:
    """For each of ``groups`` (inexact ones), ``None`` if the kept-units reference reproduces
    every normalisation over its units, else why not."""
    found: dict[str, str | None] = {}
    for name in groups:
        norms = [n for n in normalisations if name in n.groups]
        if not norms:
            found[name] = (
                "no record of where it is normalised (pass the normalisations of "
                "build_structural_groups to verify)"
            )
        else:
            found[name] = next((n.problem for n in norms if n.problem is not None), None)
    return found


def kept_units_reference(
    masked: nn.Module, selection: Mapping[str, Tensor], normalisations: Sequence[Normalisation]
) -> nn.Module:
    """Replace, in ``masked`` (a masked copy, changed in place), every normalisation that loses
    positions under ``selection`` by its :class:`KeptUnits` version; return ``masked``.

    Inner modules are wrapped first, so that an outer wrapped module (a block calling
    ``F.layer_norm`` itself) runs them wrapped; a normalisation inside an outer one over the
    same units is left alone (its input is already narrowed there, and its per-position
    tensors are sliced with the outer module's)."""
    paths: dict[int, list[str]] = {}
    for name, module in masked.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(name)
    modules = dict(masked.named_modules(remove_duplicate=False))
    active = active_normalisations(normalisations, selection)
    for norm, kept in sorted(active, key=lambda item: -item[0].module.count(".")):
        if any(_inside(norm, outer) for outer, _ in active):
            continue
        if not norm.module:  # the model's own inputs never carry units: cannot happen
            raise KeptUnitsError("the model itself cannot be wrapped", norm.groups)
        module = modules[norm.module]
        wrapper = KeptUnits(_sliced(module, norm, kept), norm.inputs, kept, norm)
        for path in paths[id(module)]:
            parent, _, attr = path.rpartition(".")
            setattr(masked.get_submodule(parent), attr, wrapper)
    return masked


def active_normalisations(
    normalisations: Sequence[Normalisation], selection: Mapping[str, Tensor]
) -> list[tuple[Normalisation, Tensor]]:
    """The reproducible normalisations that lose positions under ``selection``, with the kept
    positions of each."""
    return [
        (n, kept)
        for n in normalisations
        if n.problem is None and not bool((kept := n.kept(selection)).all())
    ]


def _inside(inner: Normalisation, outer: Normalisation) -> bool:
    """``inner`` runs inside ``outer``'s module on the same units (so on narrowed inputs)."""
    return inner.module.startswith(f"{outer.module}.") and inner.units == outer.units


def _sliced(module: nn.Module, norm: Normalisation, kept: Tensor) -> nn.Module:
    """A copy of ``module`` whose per-position tensors keep only the kept positions, with its
    width attributes re-derived (``normalized_shape``, ``num_channels``)."""
    inner = copy.deepcopy(module)
    index = kept.nonzero().flatten()
    for name, dim in norm.tensors:
        owner_path, _, attr = name.rpartition(".")
        owner = inner.get_submodule(owner_path)
        if attr in owner._parameters:
            p = owner._parameters[attr]
            assert p is not None
            sliced = p.detach().index_select(dim, index.to(p.device)).clone()
            owner._parameters[attr] = nn.Parameter(sliced, p.requires_grad)
        else:
            b = owner._buffers[attr]
            assert b is not None
            owner._buffers[attr] = b.index_select(dim, index.to(b.device)).clone()
    subs = sorted(inner.named_modules(), key=lambda item: -item[0].count(".") - bool(item[0]))
    for _, sub in subs:  # innermost first, as surgery does
        rule = shrink_rule_for(sub)
        if rule is not None:
            rule.update(sub)
    return inner


def _factor(view: UnitView, keep: Tensor) -> Tensor:
    """The 0/1 mask of one member, as small as broadcasting allows: a vector along the units'
    dimension for axis and index views, the full shape otherwise."""
    if isinstance(view, (AxisView, IndexView)):
        shape = tuple(n if d == view.dim else 1 for d, n in enumerate(view.shape))
        return dataclasses.replace(view, shape=shape).expand(keep)
    return view.expand(keep)


def mask_factors(model: nn.Module, groups: Sequence[Group], selection: Selection) -> Factors:
    """The factors that zero the removed units of every member tensor of ``model``: the same
    masks as :func:`~prunekit.core.groups.selection_to_masks`, one vector per dimension."""
    by_name: dict[str, dict[tuple[int, ...], Tensor]] = {}
    for group in groups:
        keep = selection[group.name]
        if bool(keep.all()):
            continue
        values = keep.to(torch.float32)
        for member in group.members:
            factor = _factor(member.view, values)
            same = by_name.setdefault(member.tensor, {})
            key = tuple(factor.shape)
            same[key] = same[key] * factor if key in same else factor
    found: Factors = {}
    for name, factors in by_name.items():
        t = get_tensor(model, name)
        found[id(t)] = (t, tuple(factors.values()))
    return found


def apply_factors(t: Tensor, factors: Sequence[Tensor]) -> Tensor:
    """``t`` times its 0/1 factors, as a new tensor (``t`` is not changed)."""
    out = t * factors[0].to(device=t.device, dtype=t.dtype)
    for factor in factors[1:]:
        out.mul_(factor.to(device=t.device, dtype=t.dtype))
    return out


class MaskedRun(TorchDispatchMode):
    """Every operation reads each tensor of ``factors`` masked (multiplied by its factors when
    read, so no masked copy of the model exists), and, with ``upcast``, every float16 /
    bfloat16 tensor in float32."""

    def __init__(self, factors: Factors, upcast: bool = False) -> None:
        super().__init__()
        self.factors = factors
        self.upcast = upcast

    def _read(self, v: Any) -> Any:
        if not isinstance(v, Tensor):
            return v
        entry = self.factors.get(id(v))
        if entry is not None and entry[0] is v:
            v = apply_factors(v, entry[1])
        if self.upcast and v.dtype in HALF_TYPES:
            v = v.float()
        return v

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        with _disable_current_modes():  # masking is not part of the model's work (MAC counts)
            args, kwargs = pytree.tree_map(self._read, (tuple(args), dict(kwargs or {})))
        return func(*args, **kwargs)


def masked_reference(
    model: nn.Module,
    groups: Sequence[Group],
    selection: Selection,
    normalisations: Sequence[Normalisation] = (),
) -> tuple[nn.Module, Factors]:
    """What the pruned model must compute, without copying ``model``'s tensors: the module to
    run under ``MaskedRun(factors)``, and the factors.

    Without a normalisation to reproduce, that module is ``model`` itself (unchanged). Otherwise
    it is a copy of the module tree that shares ``model``'s tensors, in which the wrapped
    normalisation modules hold masked copies of theirs and are replaced by :class:`KeptUnits`
    (see :func:`kept_units_reference`)."""
    factors = mask_factors(model, groups, selection)
    active = active_normalisations(normalisations, selection)
    if not active:
        return model, factors
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        memo[id(t)] = t
    for norm, _ in active:
        module = model.get_submodule(norm.module)
        for t in (*module.parameters(), *module.buffers()):
            entry = factors.get(id(t))
            if entry is not None:
                masked = apply_factors(t, entry[1])
                is_param = isinstance(t, nn.Parameter)
                memo[id(t)] = nn.Parameter(masked, t.requires_grad) if is_param else masked
    tree = copy.deepcopy(model, memo)
    return kept_units_reference(tree, selection, normalisations), factors
