"""inspect_model: groups, per-layer counts, what cannot be pruned and why, and its rich tables."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn

from prunekit.analysis.inspect import Inspection, inspect_model, output_layers
from prunekit.errors import ConfigError
from prunekit.models import build_model
from prunekit.report.inspect_view import couples, inspection_tables

if TYPE_CHECKING:
    from tests.analysis.conftest import ModelState


def render80(ins: Inspection) -> str:
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    for table in inspection_tables(ins):
        console.print(table)
    return console.export_text(styles=False)


class Attention(nn.Module):
    """Linear 8 -> 16, 4-head self-attention with a residual, LayerNorm, mean, Linear 16 -> 3."""

    def __init__(self, need_weights: bool = False) -> None:
        super().__init__()
        self.emb = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:
        h = self.emb(x)
        a, _ = self.attn(h, h, h, need_weights=self.need_weights)
        return self.head(self.norm(h + a).mean(1))


class Through(nn.Module):
    """Linear 4 -> 6, then an op of the test's choosing, then Linear 6 -> 2."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 2)
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        h = self.a(x)
        h = torch.fft.fft(h).real if self.op == "fft" else torch.cumsum(h, dim=-1)
        return self.b(h)


@pytest.fixture(scope="module")
def small_resnet() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    model = build_model("small-resnet")
    return model, model.example_input(1)


def test_small_resnet_groups_layers_and_totals(
    small_resnet: tuple[nn.Module, Tensor], model_state: type[ModelState]
) -> None:
    model, x = small_resnet
    before = model_state.of(model)
    ins = inspect_model(model, x)
    before.assert_same(model)
    assert ins.error is None and ins.model == "SmallResNet"
    assert ins.inputs == "Tensor(1, 1, 28, 28) float32"
    # conv 144 + bn 32; block1 2*(2304+32); block2 4608+9216+512 + 3*64; block3 18432+36864
    # +2048 + 3*128; fc 64*10+10
    assert ins.params == 176 + 4672 + 14528 + 57728 + 650 == 77_754
    names = [g.name for g in ins.groups]
    assert names == [
        "conv1",
        "layer1.0.conv1",
        "layer2.0.downsample.0",
        "layer2.0.conv1",
        "layer3.0.downsample.0",
        "layer3.0.conv1",
    ]
    assert ins.units == 16 + 16 + 32 + 32 + 64 + 64
    assert all(g.exact for g in ins.groups) and ins.inexact == ()
    stem = ins.groups[0]
    # conv1 rows (16*9) + bn1 (2*16) + layer1.0.conv1 columns (16*16*9) + layer1.0.conv2 rows
    # (16*16*9) + bn2 (2*16) + layer2.0.conv1 columns (32*16*9) + downsample columns (32*16)
    assert stem.params == 144 + 32 + 2304 + 2304 + 32 + 4608 + 512 == 9936
    roles = {(m.tensor, m.dim): m.role for m in stem.members}
    assert roles[("conv1.weight", 0)] == "out"
    assert roles[("layer1.0.conv1.weight", 1)] == "in"
    assert roles[("bn1.weight", 0)] == ""
    assert not next(m for m in stem.members if m.tensor == "bn1.running_mean").scored
    layers = {layer.name: layer for layer in ins.layers}
    assert layers["conv1"].macs == 28 * 28 * 16 * 9  # 112,896
    assert layers["fc"].macs == 64 * 10 and layers["fc"].params == 650
    assert layers["bn1"].macs == 0 and layers["bn1"].groups == ("conv1",)
    assert layers["layer1.0.conv2"].group == "conv1"  # the residual stream's rows
    assert layers["fc"].group is None
    assert sum(layer.params for layer in ins.layers) == ins.params
    assert sum(layer.macs or 0 for layer in ins.layers) == ins.macs == 9_345_920
    assert len(ins.prunable_layers) == 9
    assert [(b.layer, b.reason) for b in ins.blocked] == [
        ("fc", "its output is a model output (the model's output shape is kept)")
    ]


def test_exclude_blocks_the_matching_layers(small_resnet: tuple[nn.Module, Tensor]) -> None:
    model, x = small_resnet
    ins = inspect_model(model, x, exclude=["layer3.*"])
    assert [g.name for g in ins.groups] == [
        "conv1",
        "layer1.0.conv1",
        "layer2.0.downsample.0",
        "layer2.0.conv1",
    ]
    reasons = {b.layer: b.reason for b in ins.blocked}
    assert reasons == {
        "layer3.0.conv1": "excluded (matches 'layer3.*')",
        "layer3.0.conv2": "excluded (matches 'layer3.*')",
        "layer3.0.downsample.0": "excluded (matches 'layer3.*')",
        "fc": "its output is a model output (the model's output shape is kept)",
    }
    assert ins.exclude == ("layer3.*",)


def test_exclude_pattern_matching_nothing_is_refused(
    small_resnet: tuple[nn.Module, Tensor],
) -> None:
    model, x = small_resnet
    with pytest.raises(ConfigError, match="'layr3' matches no module"):
        inspect_model(model, x, exclude=["layr3"])


def test_wrong_inputs_are_recorded_and_params_still_shown(
    small_resnet: tuple[nn.Module, Tensor],
) -> None:
    model, _ = small_resnet
    ins = inspect_model(model, torch.randn(1, 3, 28, 28))
    assert ins.error is not None and ins.error.startswith("DataError: ")
    assert "conv1" in ins.error
    assert ins.macs is None and ins.groups == () and ins.blocked == ()
    assert ins.params == 77_754
    text = render80(ins)
    assert "Tracing failed" in text and "DataError" in text


def test_unsupported_op_is_recorded_not_raised() -> None:
    ins = inspect_model(Through("fft"), torch.randn(2, 4))
    assert ins.error is not None
    assert ins.error.startswith("UnsupportedLayerError: ")
    assert "aten._fft_r2c" in ins.error
    assert ins.macs == 2 * (4 * 6 + 6 * 2)  # still counted: the model runs
    assert ins.groups == ()


def test_width_fixed_by_an_op_is_explained() -> None:
    ins = inspect_model(Through("cumsum"), torch.randn(2, 4))
    assert ins.error is None and ins.groups == ()
    reasons = {b.layer: b.reason for b in ins.blocked}
    assert reasons["a"].startswith("its output width is fixed")
    assert reasons["b"].startswith("its output is a model output")


def test_multihead_attention_heads_are_units(model_state: type[ModelState]) -> None:
    torch.manual_seed(0)
    model = Attention()
    before = model_state.of(model)
    ins = inspect_model(model, torch.randn(2, 5, 8))
    before.assert_same(model)
    assert isinstance(model.attn, nn.MultiheadAttention)  # the user's model is not converted
    assert ins.converted == ("attn",)
    heads = next(g for g in ins.groups if g.name == "attn.q_proj")
    assert heads.n_units == 4
    assert {m.per_unit for m in heads.members} == {4}  # head_dim = 16 / 4
    # q, k, v rows (3 * 16*16 + 3 * 16 biases) and out_proj columns (16*16)
    assert heads.params == 768 + 48 + 256 == 1072
    assert couples(heads) == (
        "attn.q_proj out ×4, attn.k_proj out ×4, attn.v_proj out ×4, attn.out_proj in ×4"
    )
    stream = next(g for g in ins.groups if g.name == "emb")
    assert not stream.exact  # LayerNorm over the residual stream
    layers = {layer.name: layer for layer in ins.layers}
    assert layers["attn.k_proj"].group == "attn.q_proj"
    assert layers["attn.q_proj"].macs == 2 * 5 * 16 * 16
    assert [b.layer for b in ins.blocked] == ["head"]


def test_head_averaged_attention_weights_keep_the_heads_whole() -> None:
    """``need_weights=True`` (nn.MultiheadAttention's default) averages the attention weights
    over the heads; removing a head changes that average, so the heads are kept whole, with
    the reason recorded, even though this model does not use the weights."""
    ins = inspect_model(Attention(need_weights=True), torch.randn(2, 5, 8))
    assert [g.name for g in ins.groups] == ["emb"]
    reasons = {b.layer: b.reason for b in ins.blocked}
    assert reasons["attn.q_proj"].startswith("its output width is fixed")


def test_multihead_attention_without_conversion_is_explained() -> None:
    ins = inspect_model(Attention(), torch.randn(2, 5, 8), heads=False)
    assert ins.converted == ()
    reasons = {b.layer: b.reason for b in ins.blocked}
    assert "heads=True" in reasons["attn"]
    assert [g.name for g in ins.groups] == ["emb"]


def test_output_layers_finds_the_classifier(small_resnet: tuple[nn.Module, Tensor]) -> None:
    model, x = small_resnet
    assert output_layers(model, x) == {"fc"}


def test_torchvision_resnet18() -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    ins = inspect_model(model, torch.randn(1, 3, 64, 64))
    assert ins.error is None
    assert ins.params == 11_689_512
    assert len(ins.groups) == 12
    assert ins.units == 3 * (64 + 128 + 256 + 512)
    layers = {layer.name: layer for layer in ins.layers}
    assert layers["fc"].macs == 512 * 1000
    assert layers["conv1"].macs == 32 * 32 * 64 * 3 * 49  # 7x7 stride 2 on 64x64
    assert [b.layer for b in ins.blocked] == ["fc"]
    text = render80(ins)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "+2 more" in text  # the stem's residual group touches 10 layers


def test_tables_read_at_80_columns(small_resnet: tuple[nn.Module, Tensor]) -> None:
    model, x = small_resnet
    ins = inspect_model(model, x)
    text = render80(ins)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for expected in ("Groups", "Layers", "Cannot be pruned", "77,754", "9,345,920", "9,936"):
        assert expected in text
    # every layer name on one line of its own row (no folding at 80 columns)
    for layer in ins.layers:
        assert any(line.lstrip().startswith(layer.name + " ") for line in lines), layer.name
    assert "prunable layers  9 of 10 linear/conv layers" in text
    assert "model output" in text


def test_to_dict_is_plain_data(small_resnet: tuple[nn.Module, Tensor]) -> None:
    import json

    model, x = small_resnet
    data = inspect_model(model, x).to_dict()
    text = json.dumps(data)
    assert json.loads(text)["groups"][0]["name"] == "conv1"
