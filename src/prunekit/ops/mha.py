"""A drop-in replacement for :class:`torch.nn.MultiheadAttention` whose heads can be pruned.

``nn.MultiheadAttention`` derives its head size from its *input* width
(``head_dim = embed_dim // num_heads``) and reshapes its output back to ``embed_dim``, so its
inner width ``num_heads * head_dim`` can never differ from ``embed_dim``: removing a head
breaks it. :class:`PrunableMultiheadAttention` computes exactly the same function with
separate ``q_proj`` / ``k_proj`` / ``v_proj`` Linears of width ``num_heads * head_dim`` and an
``out_proj`` from that width back to ``embed_dim``. It declares ``head_dim`` and splits its
projections with ``view(..., -1, head_dim)``, so the structural tracer makes *whole heads* the
units (see :mod:`prunekit.graph.structural.attention`) and the number of heads follows the
pruned width, as in Hugging Face attention (Michel et al. 2019, "Are Sixteen Heads Really
Better than One?", prune whole heads this way).

:func:`from_mha` converts one module with its weights (the fused ``in_proj_weight`` split into
q / k / v); :mod:`prunekit.surgery.convert` converts every one of a model before structural
pruning traces it, and replays that when a plan is rebuilt.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import ConfigError


class PrunableMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with an inner width ``num_heads * head_dim`` of its own.

    Takes the arguments of :class:`torch.nn.MultiheadAttention` (``head_dim`` defaults to
    ``embed_dim // num_heads``) and its ``forward`` has the same signature, semantics and
    outputs: ``query`` / ``key`` / ``value``, ``key_padding_mask``, ``need_weights``,
    ``attn_mask`` (2-D, or 3-D with ``batch * num_heads`` rows), ``average_attn_weights``,
    ``is_causal``, ``batch_first``, unbatched inputs, ``bias``, ``add_bias_kv``,
    ``add_zero_attn``, ``kdim`` / ``vdim`` and attention dropout in training. The weights
    are initialised as ``nn.MultiheadAttention`` initialises separate projections.

    It never takes PyTorch's fused inference kernels (``in_proj_weight`` is ``None``, so
    ``nn.TransformerEncoderLayer`` runs its composite path around it).
    """

    # read by nn.TransformerEncoderLayer / nn.TransformerEncoder to choose their fused fast
    # path; that path needs nn.MultiheadAttention's packed in_proj, which this module has not
    in_proj_weight: Tensor | None = None
    in_proj_bias: Tensor | None = None
    _qkv_same_embed_dim = False

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        head_dim: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ConfigError(
                f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}"
            )
        if head_dim is None:
            head_dim = embed_dim // num_heads
            if head_dim * num_heads != embed_dim:
                raise ConfigError(
                    f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}; "
                    "pass head_dim= to choose the head size"
                )
        if head_dim <= 0:
            raise ConfigError(f"head_dim must be positive, got {head_dim}")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        inner = num_heads * head_dim
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.batch_first = batch_first
        self.add_zero_attn = add_zero_attn
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, inner, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, inner, bias=bias, **factory)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias, **factory)
        self.bias_k: nn.Parameter | None = None
        self.bias_v: nn.Parameter | None = None
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, inner, **factory))
            self.bias_v = nn.Parameter(torch.empty(1, 1, inner, **factory))
        if device != "meta" and not (isinstance(device, torch.device) and device.type == "meta"):
            self._reset_parameters()

    def _reset_parameters(self) -> None:
        """``nn.MultiheadAttention``'s initialisation of separate projections."""
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)
        for extra in (self.bias_k, self.bias_v):
            if extra is not None:
                nn.init.xavier_normal_(extra)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"batch_first={self.batch_first}"
        )

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """What ``nn.MultiheadAttention.forward`` returns: ``(output, weights or None)``."""
        is_batched = _is_batched(query, key, value, key_padding_mask)
        key_padding_mask = F._canonical_mask(
            mask=key_padding_mask,
            mask_name="key_padding_mask",
            other_type=F._none_or_dtype(attn_mask),
            other_name="attn_mask",
            target_type=query.dtype,
        )
        if is_causal and attn_mask is None:
            raise ConfigError(
                "is_causal=True needs attn_mask (as nn.MultiheadAttention does): pass the causal "
                "mask too, e.g. nn.Transformer.generate_square_subsequent_mask(length)"
            )
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # scaled_dot_product_attention applies the causal mask itself
        else:
            attn_mask = F._canonical_mask(
                mask=attn_mask,
                mask_name="attn_mask",
                other_type=None,
                other_name="",
                target_type=query.dtype,
                check_other=False,
            )
            is_causal = is_causal and key_padding_mask is None
        q, k, v = (_batch_major(t, is_batched, self.batch_first) for t in (query, key, value))
        if key_padding_mask is not None and not is_batched:
            key_padding_mask = key_padding_mask.unsqueeze(0)
        out, weights = self._attend(
            q, k, v, key_padding_mask, attn_mask, need_weights, average_attn_weights, is_causal
        )
        out = out if is_batched and self.batch_first else out.transpose(0, 1)
        if not is_batched:
            out = out.squeeze(1)
            weights = weights.squeeze(0) if weights is not None else None
        return out, weights

    def _attend(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None,
        attn_mask: Tensor | None,
        need_weights: bool,
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention on batch-major ``[batch, length, width]`` inputs, with canonical masks."""
        bsz, tgt_len = query.shape[0], query.shape[1]
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        mask = _as_4d(attn_mask, (bsz, self.num_heads, tgt_len, k.shape[1]))
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(bsz, 1, -1)], dim=1)
            v = torch.cat([v, self.bias_v.expand(bsz, 1, -1)], dim=1)
            mask, key_padding_mask = _pad_last(mask), _pad_last(key_padding_mask)
        elif self.bias_k is not None or self.bias_v is not None:
            raise ConfigError("bias_k and bias_v must both be set or both be None")
        q, k, v = (_heads(t, self.head_dim) for t in (q, k, v))
        if self.add_zero_attn:  # one all-zero key / value position
            k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))
            mask, key_padding_mask = _pad_last(mask), _pad_last(key_padding_mask)
        if key_padding_mask is not None:
            _check_key_padding_mask(key_padding_mask, bsz, k.shape[2])
            padding = key_padding_mask.view(bsz, 1, 1, -1)
            mask = padding if mask is None else mask + padding
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * math.sqrt(1.0 / float(self.head_dim)), k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            out = torch.matmul(weights, v)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            # the scale written out: removing whole heads keeps head_dim, so it stays exact
            scale = math.sqrt(1.0 / float(self.head_dim))
            out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal, scale=scale)
        out = out.transpose(1, 2).reshape(bsz, tgt_len, -1)
        return self.out_proj(out), weights


def _is_batched(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None) -> bool:
    """3-D inputs are batched, 2-D ones are not; anything else is an error."""
    dims = (query.dim(), key.dim(), value.dim())
    if dims not in ((3, 3, 3), (2, 2, 2)):
        raise ConfigError(
            f"query, key and value must all be 3-D (batched) or 2-D (unbatched), got {dims}"
        )
    if key_padding_mask is not None and key_padding_mask.dim() != query.dim() - 1:
        raise ConfigError(
            f"key_padding_mask must be {query.dim() - 1}-D for {query.dim()}-D inputs, got "
            f"{key_padding_mask.dim()}-D"
        )
    return query.dim() == 3


def _batch_major(x: Tensor, is_batched: bool, batch_first: bool) -> Tensor:
    """``[batch, length, width]`` from an input in the module's layout."""
    if not is_batched:
        return x.unsqueeze(0)
    return x if batch_first else x.transpose(0, 1)


def _heads(x: Tensor, head_dim: int) -> Tensor:
    """``[batch, length, heads * head_dim]`` -> ``[batch, heads, length, head_dim]``; the
    number of heads follows the (pruned) width."""
    return x.view(x.shape[0], x.shape[1], -1, head_dim).transpose(1, 2)


def _as_4d(mask: Tensor | None, shape: tuple[int, int, int, int]) -> Tensor | None:
    """A 2-D ``[L, S]`` or 3-D ``[batch * heads, L, S]`` mask as ``[1, 1, L, S]`` or
    ``[batch, heads, L, S]`` (``shape``)."""
    if mask is None:
        return None
    bsz, heads, tgt_len, src_len = shape
    if tuple(mask.shape) == (tgt_len, src_len):
        return mask.view(1, 1, tgt_len, src_len)
    if tuple(mask.shape) == (bsz * heads, tgt_len, src_len):
        return mask.view(shape)
    raise ConfigError(
        f"attn_mask has shape {tuple(mask.shape)}; expected {(tgt_len, src_len)} or "
        f"(batch * num_heads, L, S) = {(bsz * heads, tgt_len, src_len)}"
    )


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """One more (unmasked) key position."""
    return F.pad(mask, (0, 1)) if mask is not None else None


def _check_key_padding_mask(mask: Tensor, bsz: int, src_len: int) -> None:
    if tuple(mask.shape) != (bsz, src_len):
        raise ConfigError(
            f"key_padding_mask has shape {tuple(mask.shape)}, expected {(bsz, src_len)}"
        )


def _param(t: Tensor, share: bool) -> nn.Parameter:
    """A parameter holding a copy of ``t`` (or, with ``share``, ``t``'s own storage)."""
    return nn.Parameter(t.detach() if share else t.detach().clone(), t.requires_grad)


def _take(linear: nn.Linear, weight: Tensor, bias: Tensor | None, share: bool) -> None:
    linear.weight = _param(weight, share)
    linear.register_parameter("bias", _param(bias, share) if bias is not None else None)


def from_mha(
    mha: nn.MultiheadAttention, *, share_tensors: bool = False
) -> PrunableMultiheadAttention:
    """A :class:`PrunableMultiheadAttention` computing what ``mha`` computes, with copies of its
    weights (``in_proj_weight`` / ``in_proj_bias`` split into q, k, v); ``mha`` is not modified.

    With ``share_tensors`` the new parameters are views of ``mha``'s tensors instead of copies
    (no memory is copied; writing to one writes to the other): for a short-lived working copy
    that is only read. A deep copy of it is compact again (``Parameter`` copies clone)."""
    if not isinstance(mha, nn.MultiheadAttention):
        raise ConfigError(f"from_mha converts nn.MultiheadAttention, got {type(mha).__name__}")
    if parametrize.is_parametrized(mha) or parametrize.is_parametrized(mha.out_proj):
        raise ConfigError(
            "cannot convert a masked (parametrized) nn.MultiheadAttention: bake or remove its "
            "masks first"
        )
    e = mha.embed_dim
    weight = mha.out_proj.weight
    new = PrunableMultiheadAttention(
        e,
        mha.num_heads,
        dropout=mha.dropout,
        bias=mha.in_proj_bias is not None,
        add_bias_kv=mha.bias_k is not None,
        add_zero_attn=mha.add_zero_attn,
        kdim=mha.kdim,
        vdim=mha.vdim,
        batch_first=mha.batch_first,
        device="meta",
        dtype=weight.dtype,
    )
    if mha.in_proj_weight is not None:
        qw, kw, vw = mha.in_proj_weight.split(e)
    else:
        qw, kw, vw = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    biases = mha.in_proj_bias.split(e) if mha.in_proj_bias is not None else (None, None, None)
    for proj, w, b in zip((new.q_proj, new.k_proj, new.v_proj), (qw, kw, vw), biases, strict=True):
        _take(proj, w, b, share_tensors)
    _take(new.out_proj, weight, mha.out_proj.bias, share_tensors)
    if mha.bias_k is not None and mha.bias_v is not None:
        new.bias_k = _param(mha.bias_k, share_tensors)
        new.bias_v = _param(mha.bias_v, share_tensors)
    return new.train(mha.training)
