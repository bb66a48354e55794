"""What tracing needs to know about attention modules: where heads are, which widths are
written in a module's code, and which modules only make constants (rotary embeddings).

- **Heads.** ``x.view(B, T, H, head_dim)`` splits a width into heads. Inside a module that
  declares its head size (an attribute named in
  :data:`prunekit.adapters.HEAD_DIM_ATTRIBUTES`, as Hugging Face
  attention modules do) and when the split's last factor is that size, a unit is a *whole
  head*: the positions of one head are coupled, heads are independent (Hugging Face writes
  ``view(..., -1, head_dim)``, so the number of heads follows the pruned width). Elsewhere the
  leading factors of a split are kept (see :func:`prunekit.graph.structural.movement.view`).
- **Fixed widths.** ``nn.MultiheadAttention`` computes its head size from the width of its
  *input* (``embed_dim // num_heads``), so its inner width cannot differ from its input's:
  its q/k/v projection rows are fixed (its feed-forward neighbours still prune). Structural
  pruning therefore first replaces it by :class:`prunekit.ops.mha.PrunableMultiheadAttention`
  (same function, declared ``head_dim``: whole heads are units); the rule here covers a model
  traced without that conversion. The same holds for the classes the model family adapters
  list as fixed-width (:func:`prunekit.adapters.fixed_widths`).
- **Constant makers.** A rotary embedding module turns a frequency buffer into cos / sin
  tables of the head size; removing whole heads never changes that size, so its outputs are
  treated as constants (and its buffers are fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from prunekit.adapters import declared_head_dim, fixed_widths, makes_constants

__all__ = ["fixed_widths", "head_dim_of", "makes_constants", "splits_heads"]


def head_dim_of(modules: Sequence[nn.Module]) -> int | None:
    """The head size declared by the innermost attention module being run, if any."""
    for module in reversed(modules):
        if isinstance(module, nn.MultiheadAttention):
            return None
        value = declared_head_dim(module)
        if value is not None:
            return value
    return None


def splits_heads(
    moved: Tensor, ins: Sequence[int], outs: Sequence[int], ndim: int, head_dim: int | None
) -> bool:
    """True when a reshape run (input dims ``ins`` -> output dims ``outs``; ``moved`` is the
    reshaped slot) splits a width into ``(..., heads, head_dim)`` inside a module that declares
    ``head_dim``: the last factor is the head size, and either the slot varies along the heads
    factor, or there is one head and the split width is the input's last dim (``ndim - 1``).

    ``matmul`` on 4-D attention tensors also splits ``batch * heads`` back into
    ``(batch, heads)``, where the heads may be exactly ``head_dim`` in number: that slot is
    constant along the batch factor, and the split dim is not the last one."""
    if head_dim is None or len(outs) < 2 or moved.shape[outs[-1]] != head_dim:
        return False
    if moved.shape[outs[-2]] == 1:
        return ins[-1] == ndim - 1
    return not bool((moved == moved.narrow(outs[-2], 0, 1)).all())
