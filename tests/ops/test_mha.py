"""PrunableMultiheadAttention computes what nn.MultiheadAttention computes (float32, ~1e-6),
for every layout, mask and option, and converts with its weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from prunekit.errors import ConfigError
from prunekit.ops.mha import PrunableMultiheadAttention, from_mha

E, H, B, L, S = 8, 2, 3, 4, 5


def _mha(**options: Any) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, **options).eval()
    with torch.no_grad():  # non-zero biases, so that a wrong split shows
        for p in (mha.in_proj_bias, mha.out_proj.bias):
            if p is not None:
                p.normal_()
    return mha


def _inputs(batch_first: bool, kdim: int = E) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(B, L, E, generator=gen)
    k, v = (torch.randn(B, S, kdim, generator=gen) for _ in range(2))
    if batch_first:
        return q, k, v
    return q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)


def _masks(kind: str) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(2)
    padding = torch.zeros(B, S, dtype=torch.bool)
    padding[0, -2:] = True
    attn = torch.rand(L, S, generator=gen) < 0.3
    attn[:, 0] = False  # no fully masked row (NaN in both)
    return {
        "none": {},
        "attn_bool": {"attn_mask": attn},
        "attn_float": {"attn_mask": torch.randn(L, S, generator=gen)},
        "attn_3d": {"attn_mask": torch.randn(B * H, L, S, generator=gen)},
        "padding": {"key_padding_mask": padding},
        "both": {"attn_mask": attn, "key_padding_mask": padding},
    }[kind]


def _close(a: tuple[Tensor, Tensor | None], b: tuple[Tensor, Tensor | None]) -> None:
    torch.testing.assert_close(b[0], a[0], rtol=1e-5, atol=1e-6)
    if a[1] is None:
        assert b[1] is None
    else:
        assert b[1] is not None
        torch.testing.assert_close(b[1], a[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("masks", ["none", "attn_bool", "attn_float", "attn_3d", "padding", "both"])
def test_matches_multihead_attention(
    batch_first: bool, need_weights: bool, average: bool, masks: str
) -> None:
    mha = _mha(batch_first=batch_first)
    new = from_mha(mha)
    kwargs = {"need_weights": need_weights, "average_attn_weights": average, **_masks(masks)}
    with torch.no_grad():
        _close(mha(*_inputs(batch_first), **kwargs), new(*_inputs(batch_first), **kwargs))


@pytest.mark.parametrize(
    "options",
    [
        {"bias": False},
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"add_bias_kv": True, "add_zero_attn": True},
        {"kdim": 6, "vdim": 6},
    ],
    ids=["no_bias", "bias_kv", "zero_attn", "bias_kv_zero_attn", "kdim_vdim"],
)
@pytest.mark.parametrize("need_weights", [True, False])
def test_matches_with_options(options: dict[str, Any], need_weights: bool) -> None:
    mha = _mha(batch_first=True, **options)
    new = from_mha(mha)
    inputs = _inputs(True, kdim=options.get("kdim", E))
    kwargs = {"need_weights": need_weights, **_masks("both")}
    with torch.no_grad():
        _close(mha(*inputs, **kwargs), new(*inputs, **kwargs))


@pytest.mark.parametrize("need_weights", [True, False])
def test_causal_unbatched_and_dropout(need_weights: bool) -> None:
    mha = _mha(batch_first=True, dropout=0.5)
    new = from_mha(mha)
    q, k, v = _inputs(True)
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    kwargs = {"need_weights": need_weights, "attn_mask": causal, "is_causal": True}
    with torch.no_grad():
        _close(mha(q, q, q, **kwargs), new(q, q, q, **kwargs))
        unbatched = (q[0], k[0], v[0])
        _close(
            mha(*unbatched, need_weights=need_weights), new(*unbatched, need_weights=need_weights)
        )
    mha.train()
    new.train()
    torch.manual_seed(3)  # same random stream: the same dropout masks
    expected = mha(q, k, v, need_weights=need_weights)
    torch.manual_seed(3)
    _close(expected, new(q, k, v, need_weights=need_weights))


def test_conversion_copies_weights_and_keeps_the_original() -> None:
    mha = _mha(batch_first=True)
    before = {n: t.clone() for n, t in mha.state_dict().items()}
    new = from_mha(mha)
    assert isinstance(new, PrunableMultiheadAttention)
    assert (new.num_heads, new.head_dim, new.embed_dim) == (H, E // H, E)
    q, _, v = mha.in_proj_weight.split(E)
    assert torch.equal(new.q_proj.weight, q) and torch.equal(new.v_proj.weight, v)
    assert torch.equal(new.k_proj.bias, mha.in_proj_bias[E : 2 * E])
    assert new.q_proj.weight.data_ptr() != mha.in_proj_weight.data_ptr()
    assert all(torch.equal(t, before[n]) for n, t in mha.state_dict().items())
    assert not new.training and new.q_proj.weight.requires_grad


def test_inner_width_may_differ_from_embed_dim() -> None:
    attn = PrunableMultiheadAttention(E, 3, head_dim=4, batch_first=True)
    q = torch.randn(B, L, E)
    out, weights = attn(q, q, q)
    assert out.shape == (B, L, E) and weights is not None and weights.shape == (B, L, L)
    assert attn.q_proj.out_features == 12 and attn.out_proj.in_features == 12


def test_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        PrunableMultiheadAttention(E, 3)
    attn = PrunableMultiheadAttention(E, H, batch_first=True)
    q = torch.randn(B, L, E)
    with pytest.raises(ConfigError, match="is_causal=True needs attn_mask"):
        attn(q, q, q, is_causal=True)
    with pytest.raises(ConfigError, match="attn_mask has shape"):
        attn(q, q, q, attn_mask=torch.zeros(B, L, L))
    with pytest.raises(ConfigError, match="must all be 3-D"):
        attn(q, q[0], q)
    with pytest.raises(ConfigError, match="converts nn.MultiheadAttention"):
        from_mha(nn.Linear(2, 2))  # type: ignore[arg-type]


def test_encoder_layer_runs_its_composite_path_around_it() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=16, batch_first=True).eval()
    converted = nn.TransformerEncoderLayer(E, H, dim_feedforward=16, batch_first=True).eval()
    converted.load_state_dict(layer.state_dict())
    converted.self_attn = from_mha(layer.self_attn)  # type: ignore[assignment]
    x = torch.randn(B, L, E)
    with torch.no_grad():  # the original takes PyTorch's fused kernel here
        torch.testing.assert_close(converted(x), layer(x), rtol=1e-5, atol=1e-5)
