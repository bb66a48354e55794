"""Which activations are zero at removed positions in the masked model.

Masking a unit zeroes its slices of every member tensor. Removing it is the same as masking only
if nothing downstream reads a non-zero value at its positions without a zeroed weight beside it:
``sum(sigmoid(x), dim=1)`` counts ``sigmoid(0) = 0.5`` for every masked channel, ``x + 1`` holds
``1`` there, while the pruned model has no such positions at all. A tensor is *clean* when every
position that carries a removable atom is zero in the masked model. Parameters and buffers are
clean (masking zeroes exactly those positions); each op's output is clean or not by its *zero
kind*:

- ``inputs``: data movement, pooling, sums along other dims: clean iff its labelled inputs are.
- ``pointwise``: decided by running the op on tiny real tensors, with the operands that are zero
  at a removed position set to zero and the others random (``relu(0) = 0``, ``exp(0) = 1``).
- ``clean`` / ``dirty``: always (convolution output rows are zeroed weights; softmax is not).
- ``norm``, ``mm``, ``sdpa``: per layer, see :func:`output_clean`.

Reductions (``sum``, ``mean``) and contractions over a labelled dimension are exact only on clean
operands; on others the tracer keeps the reduced dimension whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from prunekit.graph.atoms import Slots, left_pad, vary

ZeroKind = Literal["inputs", "pointwise", "clean", "dirty", "norm", "mm", "sdpa", "copy"]

_DIRTY = (
    "aten._softmax",
    "aten._safe_softmax",
    "aten._log_softmax",
    "aten.softmax",
    "aten.log_softmax",
    "aten.logsumexp",
    "aten.log_sigmoid_forward",
    "aten.bernoulli_",
    "aten.normal_",
    "aten.uniform_",
)
_POINTWISE = ("aten.hardswish", "aten.hardswish_", "aten.fill_", "aten.masked_fill")
_CLEAN = ("aten.zero_", "aten.convolution", "aten.embedding")
_NORM = (
    "aten.native_batch_norm",
    "aten._native_batch_norm_legit",
    "aten._native_batch_norm_legit_no_training",
    "aten.native_layer_norm",
    "aten.native_group_norm",
)
_KINDS: dict[str, ZeroKind] = {
    **dict.fromkeys(_DIRTY, "dirty"),
    **dict.fromkeys(_POINTWISE, "pointwise"),
    **dict.fromkeys(_CLEAN, "clean"),
    **dict.fromkeys(_NORM, "norm"),
    "aten.mm": "mm",
    "aten.bmm": "mm",
    "aten.addmm": "mm",
    "aten.baddbmm": "mm",
    "aten.copy_": "copy",
    "aten._scaled_dot_product_flash_attention_for_cpu": "sdpa",
    "aten._scaled_dot_product_flash_attention": "sdpa",
    "aten._scaled_dot_product_efficient_attention": "sdpa",
}


Memo = dict[tuple[Any, ...], bool]


class ZeroContext(Protocol):
    zero_memo: Memo

    def slots(self, t: Any) -> Slots: ...

    def is_clean(self, t: Any) -> bool: ...


def zero_kind(name: str, *, pointwise: bool, moves: bool) -> ZeroKind:
    """The zero kind of the ATen op ``name``: from the table above, else ``pointwise`` for an
    op with the pointwise rule, ``inputs`` for a built-in op that only moves, picks or reduces
    positions (``moves``), and ``dirty`` for anything else (a rule registered by a user)."""
    packet = name.rsplit(".", 1)[0] if name.count(".") >= 2 else name
    found = _KINDS.get(name) or _KINDS.get(packet)
    if found is not None:
        return found
    if pointwise:
        return "pointwise"
    return "inputs" if moves else "dirty"


def output_clean(
    kind: ZeroKind, ctx: ZeroContext, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> bool:
    """Whether the output of ``func(*args, **kwargs)`` is clean (see the module docstring)."""
    tensors = _tensors(args, kwargs)
    if kind == "clean":
        return True
    if kind == "dirty":
        return False
    if kind == "inputs":
        return all(ctx.is_clean(t) for t in tensors)
    if kind == "copy":
        return ctx.is_clean(args[1])
    if kind == "norm":
        name = str(func)
        x = args[0]
        if "batch_norm" in name and any(
            vary(left_pad(s, x.dim())) - {1} for s in ctx.slots(x)
        ):  # standardised over positions that are removable: (0 - mean) / std is not 0
            return False
        weight = args[2] if "layer_norm" in name else args[1]
        return isinstance(weight, Tensor) or ctx.is_clean(args[0])
    if kind == "sdpa":
        return ctx.is_clean(args[2])
    if kind == "mm":
        return _mm_clean(ctx, func, args)
    return _pointwise_clean(ctx, func, args, kwargs)


def _tensors(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Tensor]:
    found: list[Tensor] = []
    for v in (*args, *kwargs.values()):
        if isinstance(v, Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(t for t in v if isinstance(t, Tensor))
    return found


def _mm_clean(ctx: ZeroContext, func: Any, args: Sequence[Any]) -> bool:
    """A matrix product is zero at a removed row (column) when the operand carrying that row
    (column) is clean; an operand labelled only along the contracted dim adds no positions."""
    with_bias = str(func).startswith(("aten.addmm", "aten.baddbmm"))
    bias, a, b = (args[0], args[1], args[2]) if with_bias else (None, args[0], args[1])
    if bias is not None and not ctx.is_clean(bias):
        return False
    for t, contracted in ((a, a.dim() - 1), (b, b.dim() - 2)):
        dims = set().union(*(vary(left_pad(s, t.dim())) for s in ctx.slots(t)))
        if dims - {contracted} and not ctx.is_clean(t):
            return False
    return True


def _pointwise_clean(
    ctx: ZeroContext, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> bool:
    """At a position removed through operand ``L``'s atoms, every clean operand that shares a
    labelled dim with ``L`` is zero (the pointwise rule coupled them position by position);
    the output must then be zero whatever the other operands hold."""
    tensors = _tensors(args, kwargs)
    labelled = [t for t in tensors if ctx.slots(t)]
    if not labelled:
        return True
    ndim = max(t.dim() for t in tensors)
    dims = {id(t): set().union(*(vary(left_pad(s, ndim)) for s in ctx.slots(t))) for t in labelled}
    for lab in labelled:
        zero = {id(t) for t in labelled if ctx.is_clean(t) and dims[id(t)] & dims[id(lab)]}
        if not zero or not _zero_out(func, args, kwargs, zero, ctx.zero_memo):
            return False
    return True


def _zero_out(
    func: Any, args: Sequence[Any], kwargs: Mapping[str, Any], zero: set[int], memo: Memo
) -> bool:
    """Run ``func`` on 8-element real stand-ins: operands in ``zero`` are zeros, the others
    random (booleans alternate, a real 0-d constant keeps its value); True if every output
    element is zero, in each of two draws. Answers are kept in ``memo`` (one per trace)."""
    key = (str(func), _signature(args, zero), _signature(tuple(kwargs.items()), zero))
    found = memo.get(key)
    if found is not None:
        return found
    result = True
    for seed in (0, 1):
        gen = torch.Generator().manual_seed(seed)
        try:
            out = func(*_stand_ins(args, zero, gen), **dict(_stand_ins(kwargs.items(), zero, gen)))
        except Exception:  # an op that refuses stand-ins: assume the worst
            result = False
            break
        first = (
            out
            if isinstance(out, Tensor)
            else next((o for o in out if isinstance(o, Tensor)), None)
        )
        if not isinstance(first, Tensor) or not bool((first == 0).all()):
            result = False
            break
    memo[key] = result
    return result


def _signature(values: Any, zero: set[int]) -> tuple[Any, ...]:
    sig: list[Any] = []
    for v in values:
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
            sig.append((v[0], *_signature((v[1],), zero)))
        elif isinstance(v, Tensor):
            const = _constant(v)
            sig.append((id(v) in zero, str(v.dtype), v.dim() > 0, const))
        elif isinstance(v, (list, tuple)):
            sig.append(_signature(v, zero))
        else:
            sig.append(repr(v))
    return tuple(sig)


def _constant(t: Tensor) -> float | None:
    """The value of a real 0-d tensor (a Python number lifted into the call), else None."""
    if t.dim() == 0 and t.device.type != "meta" and not t.is_complex():
        return float(t)
    return None


def _stand_ins(values: Any, zero: set[int], gen: torch.Generator) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
            out.append((v[0], _stand_in(v[1], zero, gen)))
        else:
            out.append(_stand_in(v, zero, gen))
    return out


def _stand_in(v: Any, zero: set[int], gen: torch.Generator) -> Any:
    if isinstance(v, (list, tuple)) and any(isinstance(x, Tensor) for x in v):
        return type(v)(_stand_in(x, zero, gen) for x in v)
    if not isinstance(v, Tensor):
        return v
    shape: tuple[int, ...] = (8,) if v.dim() else ()
    if id(v) in zero:
        return torch.zeros(shape, dtype=v.dtype)
    const = _constant(v)
    if const is not None:
        return torch.tensor(const, dtype=v.dtype)
    if v.dtype == torch.bool:
        return torch.arange(8) % 2 == 0 if shape else torch.tensor(True)
    if v.is_floating_point():
        return (torch.randn(shape, generator=gen) * 3 + 0.5).to(v.dtype)
    return torch.randint(1, 5, shape, generator=gen).to(v.dtype)
