"""Multiply-accumulates (MACs) of one forward pass, dense and effective.

**Dense MACs** come from :class:`torch.utils.flop_counter.FlopCounterMode`, PyTorch's own counter.
It counts matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``), convolutions (including
transposed and grouped) and scaled-dot-product attention, as 2 FLOPs per multiply-add, so
MACs = FLOPs / 2 exactly. It counts nothing for element-wise work: bias additions, activations,
BatchNorm/LayerNorm, pooling, softmax and residual additions are 0. A ``Linear(784, 300)`` on a
batch of 1 is 784 * 300 = 235,200 MACs; a ``Conv2d`` is
``batch * C_out * H_out * W_out * (C_in / groups) * kH * kW``.

**Effective MACs** are what is left when multiplications by zero weights are skipped::

    effective = total - sum over prunable layers L of  macs(L) * (1 - density(L))

where ``density(L)`` is the fraction of nonzero entries of L's effective (masked) weight and
``macs(L)`` counts only L's own work (a prunable layer nested inside another is taken out of its
parent's share). Everything outside prunable layers (attention score products, unruled layers)
is kept unchanged. For Linear and convolution layers this is exact, not an estimate: every weight
entry takes part in the same number of multiply-adds (the counter includes padded positions), so
zeroing a fraction of the weight removes exactly that fraction of the layer's MACs.

MACs are attributed to modules by forward hooks only (:class:`ForwardTracker`): PyTorch's own
``ModuleTracker`` also follows the backward pass through autograd hooks on module inputs, and
fails ("Expected gradient function to be set") when an input is a parameter or a view of one
made under ``no_grad`` (timm CaiT's and PiT's class tokens, DeBERTa-v2's relative embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils.flop_counter import FlopCounterMode

from prunekit.core.modes import composite_attention, eval_mode
from prunekit.measure.inputs import ExampleInputs, call_model
from prunekit.measure.params import measured_layers


@dataclass(frozen=True)
class MacCount:
    """Dense MACs of one forward pass.

    Attributes:
        total: MACs of the whole pass.
        by_module: module name -> MACs run inside it, children included (``""`` is the model);
            modules with no MACs are left out.
        by_op: operator name (``"aten.addmm"``, ``"aten.convolution"``) -> MACs.
    """

    total: int
    by_module: Mapping[str, int]
    by_op: Mapping[str, int]


def _module_name(key: str, root: str) -> str | None:
    """The counter's ``"RootClass.a.b"`` as ``"a.b"``; ``None`` for modules outside the model."""
    if key.startswith(root + "."):
        return key[len(root) + 1 :]
    return None


def _cpu_attention_flops(
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FLOPs of ``softmax(q k^T) v`` for the CPU SDPA kernel, which PyTorch's counter misses:
    ``2 L S E`` for the scores and ``2 L S Ev`` for the weighted values, per batch and head."""
    batch_heads = math.prod(query_shape[:-2])
    length, embed = query_shape[-2], query_shape[-1]
    return 2 * batch_heads * length * key_shape[-2] * (embed + value_shape[-1])


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
"""Formulas for ops that ``FlopCounterMode`` does not know (PyTorch 2.13)."""


class ForwardTracker:
    """The names of ``model``'s modules whose forward is running, as ``FlopCounterMode``
    reads them (``parents``: ``"Global"``, the root's class name, ``"Root.a.b"``), followed
    through forward hooks only: counting needs no backward pass, and PyTorch's tracker's
    autograd hooks fail on parameter inputs (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        root = type(model).__name__
        self._names = {id(m): f"{root}.{n}" if n else root for n, m in model.named_modules()}
        self._active: list[str] = []
        self._handles: list[Any] = []

    @property
    def parents(self) -> set[str]:
        return {"Global", *self._active}

    def _enter(self, module: nn.Module, args: object) -> None:
        name = self._names.get(id(module))
        if name is not None:
            self._active.append(name)

    def _leave(self, module: nn.Module, args: object, output: object) -> None:
        name = self._names.get(id(module))
        if name is not None and name in self._active:  # the innermost entry of that name
            del self._active[len(self._active) - 1 - self._active[::-1].index(name)]

    def __enter__(self) -> ForwardTracker:
        self._handles = [
            register_module_forward_pre_hook(self._enter),
            register_module_forward_hook(self._leave, always_call=True),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._active = [], []


def _counter(model: nn.Module) -> FlopCounterMode:
    """PyTorch's counter, attributing to ``model``'s modules through :class:`ForwardTracker`."""
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    counter.mod_tracker = ForwardTracker(model)  # type: ignore[assignment]
    return counter


@contextmanager
def counting_macs(model: nn.Module) -> Iterator[Callable[[], MacCount]]:
    """Count the dense MACs of whatever runs ``model`` inside the block; the function it
    yields returns the count (call it after the run). Attention runs on its composite path, so
    ``nn.MultiheadAttention``'s products are counted. Verification counts this way while it
    runs a model anyway, which saves :func:`~prunekit.measure.measure` a forward pass."""
    counter = _counter(model)
    with composite_attention(), counter:
        yield lambda: _mac_count(counter, type(model).__name__)


def _mac_count(counter: FlopCounterMode, root: str) -> MacCount:
    counts = counter.get_flop_counts()
    total = counter.get_total_flops() // 2
    by_module = {"": total} if total else {}
    for key, ops in counts.items():
        name = _module_name(key, root)
        macs = sum(ops.values()) // 2
        if name is not None and macs:
            by_module[name] = macs
    by_op = {str(op): flops // 2 for op, flops in counts.get("Global", {}).items()}
    return MacCount(total=total, by_module=by_module, by_op=by_op)


def count_macs(model: nn.Module, example_inputs: ExampleInputs) -> MacCount:
    """Count the dense MACs of ``model(example_inputs)`` in eval mode, per module and per op.

    Runs under ``torch.no_grad`` rather than ``inference_mode`` (tensors made under
    ``inference_mode`` cannot be used by a later ordinary run of the model).
    """
    with eval_mode(model), torch.no_grad(), counting_macs(model) as result:
        call_model(model, example_inputs, purpose="counting MACs")
    return result()


def _aliases(model: nn.Module) -> dict[int, list[str]]:
    """Module id -> every name the module is reachable by (a shared module has several)."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    return names


def _own_macs(inclusive: Mapping[str, int]) -> dict[str, int]:
    """Each layer's MACs minus those of the prunable layers nested directly inside it."""
    own = dict(inclusive)
    for inner in inclusive:
        outers = [o for o in inclusive if inner.startswith(o + ".")]
        if outers:
            own[max(outers, key=len)] -= inclusive[inner]
    return own


def layer_macs(model: nn.Module, count: MacCount) -> dict[str, int]:
    """Prunable layer name -> the dense MACs of its own work in the counted pass."""
    aliases = _aliases(model)
    inclusive = {
        name: sum(count.by_module.get(a, 0) for a in aliases[id(module)])
        for name, module, _ in measured_layers(model)
    }
    return _own_macs(inclusive)


def effective_macs(model: nn.Module, count: MacCount) -> int:
    """MACs left when zero weights are skipped, from a dense ``count`` of the same model.

    The rule is in the module docstring: each prunable layer's MACs scale with the density of its
    weight; the rest of the pass is unchanged.
    """
    own = layer_macs(model, count)
    skipped = 0
    with torch.no_grad():
        for name, module, rule in measured_layers(model):
            weight = getattr(module, rule.weight)
            zeros = weight.numel() - int(torch.count_nonzero(weight).item())
            if weight.numel():
                skipped += (own[name] * zeros + weight.numel() // 2) // weight.numel()
    return count.total - skipped


def count_effective_macs(model: nn.Module, example_inputs: ExampleInputs) -> int:
    """Effective MACs of ``model(example_inputs)`` (dense count, then the density rule)."""
    return effective_macs(model, count_macs(model, example_inputs))
