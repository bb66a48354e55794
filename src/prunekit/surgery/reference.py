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
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.graph.norms import Normalisation
from prunekit.ops.shrink import shrink_rule_for


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
    active = [
        (n, kept)
        for n in normalisations
        if n.problem is None and not bool((kept := n.kept(selection)).all())
    ]
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
