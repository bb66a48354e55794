"""Op rules that must never map channels wrongly: each hostile op either gets units that surgery
removes exactly (checked against the masked original on fresh float64 inputs of another batch
size and scale, not only the example inputs) or keeps its units whole, decided from the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import UnsupportedLayerError
from prunekit.graph import build_structural_groups
from prunekit.surgery import apply_surgery, masked_copy


def drop_odd(n: int) -> Tensor:
    """Keep units 0, 2, 4, ...; remove 1, 3, 5, ..."""
    return torch.arange(n) % 2 == 0


def units(model: nn.Module, example: Tensor) -> dict[str, int]:
    """Group name -> number of units."""
    return {g.name: g.n_units for g in build_structural_groups(model.double().eval(), example)}


def fresh_diff(
    model: nn.Module, example: Tensor, keep: Callable[[int], Tensor] = drop_odd
) -> tuple[float, Any]:
    """Prune every group with ``keep``, then compare the pruned model with the masked original
    on a fresh input: batch 3, scale 5, shifted (the example has batch 2, scale 1)."""
    model = model.double().eval()
    groups = build_structural_groups(model, example)
    selection = {g.name: keep(g.n_units) for g in groups}
    pruned, _ = apply_surgery(model, groups, selection)
    masked = masked_copy(model, groups, selection)
    gen = torch.Generator().manual_seed(7)
    fresh = torch.randn((3, *example.shape[1:]), generator=gen, dtype=torch.float64) * 5 - 2
    with torch.no_grad():
        return float((pruned(fresh) - masked(fresh)).abs().max()), pruned


IMAGE = torch.randn(2, 3, 6, 6, dtype=torch.float64)
TOKENS = torch.randn(2, 5, 8, dtype=torch.float64)


class Between(nn.Module):
    """conv a (3 -> 8) -> ``op`` -> conv b (8 -> 4): the op sits on a's channels."""

    def __init__(self, op: Callable[[Tensor], Tensor], width: int = 8) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(width, 4, 1)
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.op(self.a(x)))


# -- roll, flip, permutations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shift", "n_units"),
    [(2, 6), (-3, 5), (1, 7), (8, None), (-9, None)],
)
def test_roll_keeps_the_positions_that_wrap(shift: int, n_units: int | None) -> None:
    """roll by 2 on 8 channels: channels 6 and 7 wrap to the front and are kept; the other 6
    are units. A shift of 8 or more keeps every channel."""
    model = Between(lambda y: torch.roll(y, shift, dims=1))
    assert units(model, IMAGE).get("a") == n_units
    diff, pruned = fresh_diff(model, IMAGE)
    assert diff < 1e-10
    if n_units is not None:
        assert pruned.b.in_channels == 8 - n_units // 2


def test_flip_maps_every_channel() -> None:
    model = Between(lambda y: torch.flip(y, dims=[1]))
    assert units(model, IMAGE) == {"a": 8}
    diff, pruned = fresh_diff(model, IMAGE)
    assert diff < 1e-10 and pruned.b.in_channels == 4


def test_index_permutation_keeps_channels_whole() -> None:
    perm = [3, 1, 0, 2, 7, 6, 5, 4]
    model = Between(lambda y: y[:, perm])
    assert "a" not in units(model, IMAGE)
    assert fresh_diff(model, IMAGE)[0] == 0.0


# -- circular padding, in-place writes into views -------------------------------------------------


def test_circular_conv_maps_channels() -> None:
    """Circular padding is ``new_empty`` + copies into views in ATen; its function rule maps the
    channels straight through."""
    model = Between(nn.Identity())
    model.b = nn.Conv2d(8, 4, 3, padding=1, padding_mode="circular")
    assert units(model, IMAGE) == {"a": 8}
    diff, pruned = fresh_diff(model, IMAGE)
    assert diff < 1e-10 and pruned.b.in_channels == 4


def test_masked_fill_with_a_channel_mask_keeps_channels() -> None:
    mask = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0], dtype=torch.bool).view(1, 8, 1, 1)

    def fill(y: Tensor) -> Tensor:
        return y.masked_fill_(mask, 0.0)

    model = Between(fill)
    assert "a" not in units(model, IMAGE)
    assert fresh_diff(model, IMAGE)[0] == 0.0


def test_in_place_fill_of_a_spatial_view_maps_channels() -> None:
    def fill(y: Tensor) -> Tensor:
        y[:, :, :2].masked_fill_(y[:, :, :2] > 0, 0.0)
        return y

    model = Between(fill)
    assert units(model, IMAGE) == {"a": 8}
    assert fresh_diff(model, IMAGE)[0] < 1e-10


def test_copy_into_a_view_of_a_fresh_buffer_keeps_channels() -> None:
    """The buffer has no units, so the units written into its view would never reach it."""

    def shifted(y: Tensor) -> Tensor:
        buf = y.new_zeros(y.shape)
        buf[:, :, 1:].copy_(y[:, :, :-1])
        return buf

    model = Between(shifted)
    assert "a" not in units(model, IMAGE)
    assert fresh_diff(model, IMAGE)[0] == 0.0


class PasteInto(nn.Module):
    """Conv c's output pasted into a spatial view of conv a's output: a and c lose the same
    channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x)
        y[:, :, 1:].copy_(self.c(x)[:, :, 1:])
        return self.b(y)


def test_copy_into_a_view_couples_the_writer_with_the_tensor() -> None:
    assert units(PasteInto(), IMAGE) == {"a": 8}
    diff, pruned = fresh_diff(PasteInto(), IMAGE)
    assert diff < 1e-10 and pruned.c.out_channels == 4 == pruned.a.out_channels


# -- split and chunk -----------------------------------------------------------------------------


class Res2(nn.Module):
    """res2net's hierarchy: split a's 8 channels into pieces, a 3x3 conv per piece."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.width, self.how = 2, how
        self.convs = nn.ModuleList(nn.Conv2d(2, 2, 3, padding=1) for _ in range(3))
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x)
        if self.how == "size":
            pieces = torch.split(y, self.width, 1)
        elif self.how == "sizes":
            pieces = y.split([2, 2, 2, 2], 1)
        else:
            pieces = y.chunk(4, 1)
        outs, prev = [], None
        for piece, conv in zip(pieces, self.convs, strict=False):
            prev = conv(piece if prev is None else piece + prev)
            outs.append(prev)
        return self.c(torch.cat([*outs, pieces[-1]], 1))


@pytest.mark.parametrize("how", ["size", "sizes"])
def test_split_with_sizes_written_in_code_keeps_the_dim(how: str) -> None:
    found = units(Res2(how), IMAGE)
    assert "a" not in found and "convs.0" not in found
    assert found["convs.2"] == 2  # the last conv's output is concatenated, not split
    assert fresh_diff(Res2(how), IMAGE)[0] < 1e-10


def test_chunk_removes_the_same_position_from_every_piece() -> None:
    """chunk(4) keeps 4 pieces whatever the width: a unit is position j of every piece."""
    model = Res2("chunk")
    model.convs = nn.ModuleList(nn.Conv2d(2, 2, 3, padding=1, groups=2) for _ in range(3))
    assert units(model, IMAGE)["a"] == 2
    diff, pruned = fresh_diff(model, IMAGE)
    assert diff < 1e-10 and pruned.a.out_channels == 4


# -- grouped convolutions whose groups are written in code --------------------------------------


class Blur(nn.Module):
    """tresnet's blur pool: ``F.conv2d(..., groups=self.channels)`` with a fixed filter."""

    filt: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.channels = 8
        filt = torch.tensor([1.0, 2.0, 1.0])
        filt = (filt[:, None] * filt[None, :]) / 16
        self.register_buffer("filt", filt[None, None].repeat(8, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), "reflect"), self.filt, groups=self.channels)


class FourGroups(nn.Module):
    """``F.conv2d(x, w, groups=4)``: 2 inputs and 3 outputs per group."""

    def __init__(self) -> None:
        super().__init__()
        self.groups = 4
        self.w = nn.Parameter(torch.randn(12, 2, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(torch.relu(x), self.w, padding=1, groups=self.groups)


def test_functional_depthwise_conv_keeps_its_channels() -> None:
    model = Between(Blur())
    assert "a" not in units(model, IMAGE)
    assert fresh_diff(model, IMAGE)[0] == 0.0


def test_functional_grouped_conv_keeps_its_group_count() -> None:
    """Units: input position j of every group (2), output position m of every group (3)."""
    model = Between(FourGroups(), width=12)
    assert units(model, IMAGE) == {"a": 2, "op": 3}
    diff, pruned = fresh_diff(model, IMAGE)
    assert diff < 1e-10
    assert pruned.op.w.shape == (8, 1, 3, 3) and pruned.b.in_channels == 8


# -- reductions of values that are not zero at removed positions ---------------------------------


class Gated(nn.Module):
    def __init__(self, f: Callable[[Tensor], Tensor], reduce: str = "sum") -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)
        self.f, self.reduce = f, reduce

    def forward(self, x: Tensor) -> Tensor:
        y = self.a(x)
        g = self.f(y)
        g = g.sum(1, keepdim=True) if self.reduce == "sum" else g.mean(1, keepdim=True)
        return self.b(y) * g


@pytest.mark.parametrize(
    ("f", "reduce"),
    [
        (torch.sigmoid, "sum"),
        (torch.exp, "mean"),
        (lambda y: y + 1.0, "sum"),
        (torch.cos, "sum"),
        (F.hardsigmoid, "sum"),
    ],
)
def test_sum_over_channels_of_a_non_zero_preserving_function_keeps_them(
    f: Callable[[Tensor], Tensor], reduce: str
) -> None:
    """``sum_c sigmoid(y_c)``: a masked channel adds ``sigmoid(0) = 0.5``, a removed one adds
    nothing, so the channels are kept."""
    model = Gated(f, reduce)
    assert "a" not in units(model, IMAGE)
    assert fresh_diff(model, IMAGE)[0] == 0.0


@pytest.mark.parametrize("f", [torch.relu, torch.tanh, lambda y: y * torch.sigmoid(y)])
def test_sum_over_channels_of_a_zero_preserving_function_is_exact(
    f: Callable[[Tensor], Tensor],
) -> None:
    model = Gated(f)
    assert units(model, IMAGE) == {"a": 8}
    assert fresh_diff(model, IMAGE)[0] < 1e-9


def test_in_place_add_of_a_constant_makes_the_sum_inexact() -> None:
    def shifted_sum(y: Tensor) -> Tensor:
        z = y.clone()
        z.add_(1.0)
        return y * z.sum(1, keepdim=True)

    model = Between(shifted_sum)
    assert "a" not in units(model, IMAGE)
    assert fresh_diff(model, IMAGE)[0] == 0.0


# -- attention without an explicit scale ---------------------------------------------------------


class OneHead(nn.Module):
    """Single-head attention: the units of q / k are positions inside the head."""

    def __init__(self, scale: float | None) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 6), nn.Linear(8, 6), nn.Linear(8, 6)
        self.proj = nn.Linear(6, 8)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (m(x).unsqueeze(1) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.squeeze(1))


def test_sdpa_default_scale_keeps_the_head_size() -> None:
    """Without ``scale=`` SDPA scales by ``1 / sqrt(6)``; removing 3 of q's 6 positions would
    make it ``1 / sqrt(3)``. q and k keep their width; v's positions are still units."""
    assert units(OneHead(None), TOKENS) == {"v": 6}
    assert fresh_diff(OneHead(None), TOKENS)[0] < 1e-10


def test_sdpa_explicit_scale_prunes_inside_the_head() -> None:
    assert units(OneHead(0.3), TOKENS) == {"q": 6, "v": 6}
    diff, pruned = fresh_diff(OneHead(0.3), TOKENS)
    assert diff < 1e-10 and pruned.q.out_features == 3 and pruned.k.out_features == 3


# -- topk / sort / argsort along channels -----------------------------------------------------


class Router(nn.Module):
    """Mixtral-style routing: the top 2 of 6 expert logits, softmax-weighted."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.gate = nn.Linear(8, 6)
        self.out = nn.Linear(6 if how != "topk" else 2, 4)
        self.how = how

    def forward(self, x: Tensor) -> Tensor:
        logits = self.gate(x)
        if self.how == "topk":
            weights, _ = torch.topk(logits, 2, dim=-1)
            return self.out(torch.softmax(weights, -1))
        if self.how == "scatter":
            weights, idx = torch.topk(logits, 2, dim=-1)
            return self.out(torch.zeros_like(logits).scatter(-1, idx, weights.softmax(-1)))
        if self.how == "sort":
            return self.out(torch.sort(logits, dim=-1).values)
        return self.out(logits.gather(-1, torch.argsort(logits, dim=-1)))


@pytest.mark.parametrize("how", ["topk", "scatter", "sort", "argsort"])
def test_ranking_along_channels_keeps_them(how: str) -> None:
    x = torch.randn(2, 8, dtype=torch.float64)
    assert "gate" not in units(Router(how), x)
    assert fresh_diff(Router(how), x)[0] == 0.0


def test_op_without_a_rule_is_refused_with_its_module_path() -> None:
    class Inner(nn.Module):
        def forward(self, y: Tensor) -> Tensor:
            return torch.cummax(y, dim=1).values

    model = Between(Inner())
    with pytest.raises(UnsupportedLayerError, match=r"aten\.cummax.*module 'op'"):
        build_structural_groups(model.double(), IMAGE)


# -- weight standardisation ----------------------------------------------------------------------


def standardised(w: Tensor, eps: float) -> Tensor:
    """Each output channel's weights over its inputs: zero mean, unit (biased) variance."""
    flat = w.reshape(w.shape[0], -1)
    mean = flat.mean(1, keepdim=True)
    var = flat.var(1, unbiased=False, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + eps)).reshape_as(w)


@pytest.fixture(scope="module")
def std_conv() -> type[nn.Conv2d]:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    from timm.layers import StdConv2d

    return StdConv2d


def test_standardised_conv_output_channels_are_exact(std_conv: type[nn.Conv2d]) -> None:
    """Statistics run per output channel: removing output channels is exact."""
    model = Between(torch.relu)
    model.a = std_conv(3, 8, 3, padding=1)
    found = build_structural_groups(model.double().eval(), IMAGE)
    assert {g.name: g.n_units for g in found} == {"a": 8} and not found.inexact
    diff, pruned = fresh_diff(model, IMAGE)
    assert diff < 1e-10 and pruned.a.out_channels == 4


def test_standardised_conv_input_channels_are_inexact(std_conv: type[nn.Conv2d]) -> None:
    """Removing input channels changes the statistics: the group is inexact, the record says
    the kept-units reference runs conv ``b`` on its kept inputs, and the pruned model equals
    ``b`` standardised over the kept inputs only (worked out here by hand)."""
    model: Any = Between(torch.relu).double().eval()
    model.b = std_conv(8, 4, 3, padding=1).double()
    groups = build_structural_groups(model, IMAGE)
    assert [g.name for g in groups] == ["a"] and groups.inexact == {"a"}
    (norm,) = groups.normalisations
    assert (norm.module, norm.inputs, norm.tensors, norm.through) == (
        "b", ((0, 1),), (("weight", 1),), False,
    )  # fmt: skip
    keep = drop_odd(8)
    pruned, _ = apply_surgery(model, groups, {"a": keep})
    fresh = torch.randn(3, 3, 6, 6, dtype=torch.float64) * 5 - 2
    hidden = torch.relu(model.a(fresh))[:, keep]
    weight = standardised(model.b.weight[:, keep], float(model.b.eps))
    expected = F.conv2d(hidden, weight, model.b.bias, padding=1)
    with torch.no_grad():
        assert float((pruned(fresh) - expected).abs().max()) < 1e-10


# -- what was kept whole is reported ------------------------------------------------------------


class Apply(nn.Module):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, y: Tensor) -> Tensor:
        return self.fn(y)


@pytest.mark.parametrize(
    ("fn", "op"),
    [
        (lambda y: torch.roll(y, 2, 1), "aten.roll"),
        (lambda y: y * torch.sigmoid(y).sum(1, keepdim=True), "aten.sum"),
        (lambda y: torch.cat(torch.split(y, 2, 1)[::-1], 1), "split"),
        (lambda y: y.new_zeros(y.shape).index_add_(3, torch.arange(6), y), "aten.index_add"),
    ],
)
def test_kept_units_are_reported_with_op_and_module(
    fn: Callable[[Tensor], Tensor], op: str
) -> None:
    groups = build_structural_groups(Between(Apply(fn)).double().eval(), IMAGE)
    found = [k for k in groups.kept if k.op.startswith(op)]
    assert found and all(k.where == "op" for k in found), groups.kept
