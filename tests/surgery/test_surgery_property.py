"""Property: on random small architectures, surgery equals masking on the removed units.

Architectures are drawn from the pieces the tracer must handle: Conv-BN-ReLU, residual blocks,
DenseNet-style concat, chunk/split, grouped and depthwise convs, squeeze-excite, channel shuffle,
a flatten into Linear, and attention over the spatial positions: Hugging Face style (declared
``head_dim``, ``view(..., -1, head_dim)``, explicit softmax or fused SDPA) and
``nn.MultiheadAttention``, converted to its head-prunable replacement before tracing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from prunekit.graph import build_structural_groups
from prunekit.ops.mha import PrunableMultiheadAttention
from prunekit.surgery import apply_surgery, rebuild, verify
from prunekit.surgery.convert import replace_multihead_attention


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    def __init__(self, c: int, mid: int) -> None:
        super().__init__()
        self.a = ConvBlock(c, mid)
        self.b = nn.Conv2d(mid, c, 1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bn(self.b(self.a(x))))


class DenseBlock(nn.Module):
    def __init__(self, c: int, growth: int) -> None:
        super().__init__()
        self.conv = ConvBlock(c, growth)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(x)], dim=1)


class SplitBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = ConvBlock(c // 2, c // 2)

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([a, self.conv(b)], dim=1)


class GroupedBlock(nn.Module):
    def __init__(self, c: int, groups: int, per_group_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, groups * per_group_out, 3, padding=1, groups=groups)
        self.bn = nn.BatchNorm2d(groups * per_group_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.hardswish(self.bn(self.conv(x)))


class SEBlock(nn.Module):
    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class Shuffle(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class HFAttention(nn.Module):
    """Self-attention written as Hugging Face writes it: the head size is an attribute and the
    number of heads follows the projections' width."""

    def __init__(self, c: int, heads: int, head_dim: int, fused: bool) -> None:
        super().__init__()
        self.head_dim, self.fused = head_dim, fused
        self.query, self.key, self.value = (nn.Linear(c, heads * head_dim) for _ in range(3))
        self.out = nn.Linear(heads * head_dim, c)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        q, k, v = (
            p(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            for p in (self.query, self.key, self.value)
        )
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.softmax(q @ k.transpose(-2, -1) / self.head_dim**0.5, dim=-1) @ v
        return self.out(out.transpose(1, 2).reshape(b, t, -1))


class AttentionBlock(nn.Module):
    """Attention over the spatial positions of a feature map, with or without a residual."""

    def __init__(self, attn: nn.Module, residual: bool) -> None:
        super().__init__()
        self.attn, self.residual = attn, residual

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if isinstance(self.attn, HFAttention):
            out = self.attn(tokens)
        else:
            out = self.attn(tokens, tokens, tokens, need_weights=False)[0]
        out = out.transpose(1, 2).reshape(n, -1, h, w)  # the width of the attention's output
        return x + out if self.residual else out


def attention(draw: st.DrawFn, c: int) -> AttentionBlock:
    kind = draw(st.sampled_from(["hf", "hf_sdpa", "mha", "prunable"]))
    heads = draw(st.integers(1, 4))
    head_dim = draw(st.integers(1, 4))  # heads == head_dim included: no special case
    attn: nn.Module
    if kind == "mha" and c % heads == 0:
        attn = nn.MultiheadAttention(c, heads, batch_first=True, add_bias_kv=draw(st.booleans()))
    elif kind == "prunable":
        attn = PrunableMultiheadAttention(c, heads, head_dim=head_dim, batch_first=True)
    else:
        attn = HFAttention(c, heads, head_dim, fused=kind == "hf_sdpa")
    return AttentionBlock(attn, draw(st.booleans()))


class Net(nn.Module):
    def __init__(self, stem_width: int, blocks: list[nn.Module], flatten: bool) -> None:
        super().__init__()
        self.stem = ConvBlock(3, stem_width)
        self.blocks = nn.Sequential(*blocks)
        self.flatten = flatten
        with torch.no_grad():
            width = int(self.blocks(self.stem(torch.zeros(1, 3, 2, 2))).shape[1])
        self.head = nn.Linear(width * (4 if flatten else 1), 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        x = x.flatten(1) if self.flatten else x.mean((2, 3))
        return self.head(x)


@st.composite
def architectures(draw: st.DrawFn) -> Net:
    stem = c = draw(st.sampled_from([4, 6, 8]))
    blocks: list[nn.Module] = []
    kinds = ["conv", "res", "dense", "split", "group", "dw", "se", "shuffle", "attn"]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            out = draw(st.integers(2, 8))
            blocks.append(ConvBlock(c, out))
            c = out
        elif kind == "res":
            blocks.append(ResBlock(c, draw(st.integers(1, 6))))
        elif kind == "dense":
            growth = draw(st.integers(1, 4))
            blocks.append(DenseBlock(c, growth))
            c += growth
        elif kind == "split" and c % 2 == 0:
            blocks.append(SplitBlock(c))
        elif kind == "group":
            groups = draw(st.sampled_from([g for g in (2, 3, 4) if c % g == 0] or [1]))
            per = draw(st.integers(1, 3))
            blocks.append(GroupedBlock(c, groups, per))
            c = groups * per
        elif kind == "dw":
            per = draw(st.integers(1, 2))
            blocks.append(GroupedBlock(c, c, per))
            c *= per
        elif kind == "se":
            blocks.append(SEBlock(c, draw(st.integers(1, 3))))
        elif kind == "shuffle" and c % 2 == 0 and c >= 4:  # see docs: C // g == 1
            blocks.append(Shuffle())
        elif kind == "attn":
            blocks.append(attention(draw, c))
    return Net(stem, blocks, draw(st.booleans()))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=architectures(), seed=st.integers(0, 2**16))
def test_surgery_equals_masking_on_random_architectures(net: Net, seed: int) -> None:
    torch.manual_seed(seed)
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 2, 2)
    model, _ = replace_multihead_attention(net)  # what prunekit.prune does
    groups = build_structural_groups(model, x)
    gen = torch.Generator().manual_seed(seed)
    selection = {}
    for g in groups:
        keep = torch.rand(g.n_units, generator=gen) < 0.6
        keep[torch.randint(g.n_units, (1,), generator=gen)] = True
        selection[g.name] = keep
    pruned, plan = apply_surgery(model, groups, selection)
    report = verify(model, pruned, groups, selection, x)
    assert report.max_abs_diff <= report.tolerance
    assert report.complete
    rebuilt = rebuild(net, plan)  # replays the conversion of nn.MultiheadAttention
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in pruned.parameters()]
    for attn in pruned.modules():  # whole heads only
        if isinstance(attn, (HFAttention, PrunableMultiheadAttention)):
            proj = attn.query if isinstance(attn, HFAttention) else attn.q_proj
            assert proj.out_features % attn.head_dim == 0
