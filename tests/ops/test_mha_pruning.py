"""Head pruning of nn.MultiheadAttention through its replacement: whole heads are units,
surgery equals masking, the plan replays the conversion (save / load), the user's model is
never modified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import prunekit
from prunekit import io
from prunekit.config import PruneConfig
from prunekit.errors import SaveFileError
from prunekit.estimators import get_estimator
from prunekit.graph import build_structural_groups
from prunekit.ops.mha import PrunableMultiheadAttention
from prunekit.pruning import prune_structured
from prunekit.result import PruneResult
from prunekit.surgery import Plan, apply_plan, apply_surgery, rebuild, rebuild_hook, verify
from prunekit.surgery.convert import replace_multihead_attention


class Encoder(nn.Module):
    """A tiny transformer encoder: embedding, two nn.TransformerEncoderLayer, a classifier."""

    def __init__(self, width: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(6, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=32, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)
        self.head = nn.Linear(width, 3)

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(self.embed(x), src_key_padding_mask=padding).mean(1))


def _encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder().eval()


def _x() -> Tensor:
    return torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(1))


def _prune(model: nn.Module, x: Any, **kwargs: Any) -> PruneResult:
    result = prunekit.prune(
        model, x, sparsity=0.5, granularity="channel", scope="layer", **kwargs
    )  # fmt: skip
    assert isinstance(result, PruneResult)
    return result


def _vit() -> nn.Module:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    vit: Any = models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64
    )
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts it at zero: outputs all equal
    return vit.eval()


def test_a_head_is_a_unit_of_q_k_v_rows_and_out_proj_columns() -> None:
    model, names = replace_multihead_attention(_encoder())
    assert names == ("encoder.layers.0.self_attn", "encoder.layers.1.self_attn")
    groups = {g.name: g for g in build_structural_groups(model, _x())}
    group = groups["encoder.layers.0.self_attn.q_proj"]
    assert group.n_units == 4  # heads
    members = {(m.tensor, getattr(m.view, "dim", None)) for m in group.members}
    prefix = "encoder.layers.0.self_attn"
    assert members == {
        *((f"{prefix}.{p}_proj.{t}", 0) for p in "qkv" for t in ("weight", "bias")),
        (f"{prefix}.out_proj.weight", 1),
    }
    # 4 heads of 4: matmul's [batch * heads] -> [batch, heads] split must not merge them
    assert groups["encoder.layers.1.self_attn.q_proj"].n_units == 4


def test_encoder_heads_are_pruned_and_verified() -> None:
    model = _encoder()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = _prune(model, _x(), include=["*.q_proj", "*.linear1"])
    assert result.verification is not None and result.verification.complete
    for layer in result.model.encoder.layers:  # type: ignore[union-attr]
        attn = layer.self_attn
        assert isinstance(attn, PrunableMultiheadAttention)
        assert attn.num_heads == 2 and attn.q_proj.out_features == 8
        assert attn.out_proj.in_features == 8 and attn.embed_dim == 16
    assert set(result.plan.convert) == {"encoder.layers.0.self_attn", "encoder.layers.1.self_attn"}
    assert result.plan.modules["encoder.layers.0.self_attn"]["num_heads"] == [4, 2]
    # the user's model is untouched
    assert all(isinstance(m.self_attn, nn.MultiheadAttention) for m in model.encoder.layers)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_padding_mask_and_nested_tensor_path() -> None:
    model = _encoder()
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[0, 3:] = True
    inputs = (_x(), padding)
    result = _prune(model, inputs, include=["*.q_proj"])
    assert result.verification is not None and result.verification.complete
    converted, _ = replace_multihead_attention(model)
    assert not converted.encoder.use_nested_tensor  # type: ignore[union-attr]
    assert model.encoder.use_nested_tensor  # the original keeps its fast path
    with torch.no_grad():
        out = result.model(*inputs)
    assert out.shape == (2, 3) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("through_api", [False, True])
def test_heads_false_keeps_multihead_attention(through_api: bool) -> None:
    if through_api:
        result = _prune(_encoder(), _x(), heads=False)
    else:
        config = PruneConfig(granularity="channel", sparsity=0.5, scope="layer", heads=False)
        result = prune_structured(_encoder(), _x(), config, estimator=get_estimator("magnitude"))
    attn = result.model.encoder.layers[0].self_attn  # type: ignore[union-attr,index]
    assert isinstance(attn, nn.MultiheadAttention) and attn.in_proj_weight.shape[0] == 48
    assert not result.plan.convert


def test_kept_heads_save_as_compact_tensors(tmp_path: Path) -> None:
    result = _prune(_encoder(), _x(), include=["*.linear1"])  # every head kept
    attn = result.model.encoder.layers[0].self_attn  # type: ignore[union-attr,index]
    assert isinstance(attn, PrunableMultiheadAttention) and attn.num_heads == 4
    assert attn.q_proj.weight.untyped_storage().nbytes() == 16 * 16 * 4  # not a fused view
    io.save(result.model, tmp_path / "m", plan=result.plan.to_json())  # safetensors: no sharing
    loaded = io.load(tmp_path / "m", _encoder(), rebuild_hook=rebuild_hook).eval()
    with torch.no_grad():
        assert torch.equal(loaded(_x()), result.model(_x()))


def test_plan_rebuilds_and_inplace_applies_the_conversion() -> None:
    model = _encoder()
    result = _prune(model, _x(), include=["*.q_proj", "*.linear1"])
    plan = Plan.from_json(result.plan.to_json())
    assert plan.convert == result.plan.convert
    rebuilt = rebuild(_encoder(), plan)
    rebuilt.load_state_dict(result.model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(_x()), result.model(_x()))
    inplace = _encoder()
    again = _prune(inplace, _x(), include=["*.q_proj", "*.linear1"], inplace=True)
    assert again.model is inplace
    assert isinstance(inplace.encoder.layers[0].self_attn, PrunableMultiheadAttention)
    with torch.no_grad():
        assert torch.equal(inplace(_x()), result.model(_x()))


def test_a_plan_for_another_model_changes_nothing() -> None:
    result = _prune(_encoder(), _x(), include=["*.q_proj"])
    other = Encoder(width=24).eval()  # same names, other widths
    with pytest.raises(SaveFileError, match="shape"):
        apply_plan(other, result.plan)
    assert isinstance(other.encoder.layers[0].self_attn, nn.MultiheadAttention)  # undone
    assert other.encoder.use_nested_tensor
    plan = Plan.from_dict(
        {**result.plan.to_dict(), "convert": {"embed": "PrunableMultiheadAttention"}}
    )
    with pytest.raises(SaveFileError, match="'embed' should be an nn.MultiheadAttention"):
        rebuild(_encoder(), plan)


def test_torchvision_vit_heads_pruned_verified_and_reloaded(tmp_path: Path) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = _prune(_vit(), x)
    assert result.verification is not None
    assert result.kept_unverifiable == ("conv_proj",)  # hidden_dim is written in ViT's code
    for block in result.model.encoder.layers:  # type: ignore[union-attr]
        attn = block.self_attention
        assert isinstance(attn, PrunableMultiheadAttention)
        assert attn.num_heads == 2 and attn.q_proj.weight.shape == (16, 32)
        assert block.mlp[0].out_features == 32
    assert result.params_ratio is not None and result.params_ratio < 0.9
    io.save(result.model, tmp_path / "vit", plan=result.plan.to_json())
    loaded = io.load(tmp_path / "vit", _vit(), rebuild_hook=rebuild_hook).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


def test_stage_level_conversion_is_verified() -> None:
    model, _ = replace_multihead_attention(_vit())
    x = torch.randn(1, 3, 32, 32)
    groups = build_structural_groups(model, x)
    heads = [g for g in groups if g.name.endswith("self_attention.q_proj")]
    assert [g.n_units for g in heads] == [4, 4]
    selection = {g.name: torch.ones(g.n_units, dtype=torch.bool) for g in groups}
    for g in heads:
        selection[g.name] = torch.tensor([True, False, False, True])
    pruned, plan = apply_surgery(model, groups, selection)
    report = verify(model, pruned, groups, selection, x, inexact=groups.inexact)
    assert report.complete and report.max_abs_diff <= report.tolerance
    assert plan.convert == {n.removesuffix(".q_proj"): "PrunableMultiheadAttention" for n in
                            [g.name for g in heads]}  # fmt: skip
