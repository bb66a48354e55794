"""Exact verification of groups under a normalisation: the kept-units reference.

Zeroing units under a LayerNorm / RMSNorm / GroupNorm(1) over their width is not removing them
(the zeros count in the statistics), so the reference normalises over the kept units only;
the physically pruned model must then match it to float64 round-off."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import prunekit
from prunekit.core.groups import Group, Member
from prunekit.core.views import IndexView
from prunekit.graph import build_structural_groups
from prunekit.graph.norms import Normalisation
from prunekit.result import PruneResult
from prunekit.surgery import VerificationError, apply_surgery, masked_copy, verify
from prunekit.surgery.verify import reference_copy


def keep(n: int, removed: list[int]) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[removed] = False
    return mask


class HFRMSNorm(nn.Module):
    """Written like Hugging Face's LlamaRMSNorm: ``weight`` and ``variance_epsilon``, the
    statistics by ``pow`` + ``mean`` over the last dim."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(width) + 0.5)
        self.variance_epsilon = 1e-6

    def forward(self, x: Tensor) -> Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon)).to(x.dtype)


class LayerNorm2d(nn.LayerNorm):
    """Channels-first LayerNorm written as torchvision's and timm's: permute, layer norm over
    the last dim, permute back."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Residual(nn.Module):
    """A residual stream of width 6 normalised by ``norm`` before an MLP and at the end."""

    def __init__(self, norm: type[nn.Module] | Any) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.norm1, self.norm2 = norm(6), norm(6)
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        h = h + self.fc2(torch.relu(self.fc1(self.norm1(h))))
        return self.head(self.norm2(h))


def _randomise_affine(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.startswith("1."):
                p.copy_(torch.rand_like(p) + 0.5)
    return model


def _outputs(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model.double().eval()(x.double())


def _check_exact(model: nn.Module, x: Tensor, group: str, removed: list[int]) -> None:
    """The pruned model equals the kept-units reference, not the plain masked copy."""
    groups = build_structural_groups(model, x)
    assert group in groups.inexact
    selection = {g.name: keep(g.n_units, removed if g.name == group else []) for g in groups}
    pruned, _ = apply_surgery(model, groups, selection)
    report = verify(model, pruned, groups, selection, x, exhaustive=True)
    assert report.complete and report.verified_kept_reference == (group,)
    assert report.relative_diff < 1e-13
    got = _outputs(pruned, x)
    want = _outputs(reference_copy(model, groups, selection, groups.normalisations), x)
    assert torch.allclose(got, want, rtol=0, atol=1e-13 * float(want.abs().max()))
    masked = _outputs(masked_copy(model, groups, selection), x)
    assert float((got - masked).abs().max()) > 1e-3 * float(masked.abs().max())


@pytest.mark.parametrize(
    "norm",
    [nn.LayerNorm, nn.RMSNorm, HFRMSNorm, lambda c: nn.GroupNorm(1, c)],
    ids=["layer_norm", "rms_norm", "hf_rms_norm", "group_norm_1"],
)
def test_residual_stream_under_a_norm_is_verified_exactly(norm: Any) -> None:
    torch.manual_seed(0)
    model = _randomise_affine(Residual(norm))
    _check_exact(model, torch.randn(5, 4), "embed", [1, 4])


def test_normalisations_record_module_dim_units_and_affine_tensors() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    groups = build_structural_groups(model, torch.randn(2, 4))
    assert groups.normalisations == (
        Normalisation(
            module="1",
            inputs=((0, 1),),
            units=tuple(("0", i) for i in range(6)),
            tensors=(("weight", 0), ("bias", 0)),
            op="aten.native_layer_norm.default",
            where="1",
        ),
    )


def test_channels_first_layer_norm_by_permute() -> None:
    torch.manual_seed(0)
    model = _randomise_affine(nn.Sequential(nn.Conv2d(3, 6, 3), LayerNorm2d(6), nn.Conv2d(6, 2, 1)))
    _check_exact(model, torch.randn(2, 3, 5, 5), "0", [0, 3, 5])


def test_layer_norm_over_tokens_and_channels() -> None:
    """``normalized_shape`` ending in the pruned dim: (tokens, channels)."""
    torch.manual_seed(0)
    model = _randomise_affine(nn.Sequential(nn.Linear(4, 6), nn.LayerNorm((3, 6)), nn.Linear(6, 2)))
    _check_exact(model, torch.randn(2, 3, 4), "0", [2])


class FunctionalNormBlock(nn.Module):
    """``F.layer_norm`` with the block's own parameters, in the block's forward: the block
    (with its Linear layers and its own LayerNorm over the same width) is what runs on the kept
    units; an RMSNorm over the hidden width inside it is wrapped on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_weight = nn.Parameter(torch.rand(6) + 0.5)
        self.ln_bias = nn.Parameter(torch.randn(6))
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 6)
        self.hidden_norm = nn.RMSNorm(8)
        self.norm = nn.LayerNorm(6)

    def forward(self, h: Tensor) -> Tensor:
        normed = F.layer_norm(h, self.ln_weight.shape, self.ln_weight, self.ln_bias)
        return self.norm(h + self.fc2(torch.relu(self.hidden_norm(self.fc1(normed)))))


def test_a_functional_norm_in_a_block_runs_the_block_on_the_kept_units() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), FunctionalNormBlock(), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    groups = build_structural_groups(model, x)
    block, hidden, inner = groups.normalisations
    assert (block.module, hidden.module, inner.module) == ("1", "1.hidden_norm", "1.norm")
    assert hidden.tensors == (("weight", 0),) and hidden.groups == {"1.fc1"}
    assert set(block.tensors) == {("ln_weight", 0), ("ln_bias", 0), ("fc1.weight", 1),
                                  ("fc2.weight", 0), ("fc2.bias", 0), ("norm.weight", 0),
                                  ("norm.bias", 0)}  # fmt: skip
    selection = {"0": keep(6, [0, 4]), "1.fc1": keep(8, [1, 2, 3])}
    pruned = apply_surgery(model, groups, selection)[0]
    report = verify(model, pruned, groups, selection, x, exhaustive=True)
    assert report.complete and set(report.verified_kept_reference) == {"0", "1.fc1"}
    assert report.relative_diff < 1e-13


def test_group_norm_with_several_groups_stays_plainly_verified() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.Conv2d(8, 2, 1))
    x = torch.randn(2, 3, 4, 4)
    groups = build_structural_groups(model, x)
    assert groups.inexact == frozenset() and groups[0].n_units == 2  # a unit: one norm group
    selection = {"0": keep(2, [1])}
    pruned = apply_surgery(model, groups, selection)[0]
    report = verify(model, pruned, groups, selection, x, exhaustive=True)
    assert report.verified == ("0",) and report.verified_kept_reference == ()


def test_a_wrong_index_in_surgery_is_caught_by_the_kept_units_reference() -> None:
    """Surgery slices the LayerNorm's weight at the wrong positions: the model runs, the
    reference (sliced from the trace's units, not the groups' views) disagrees."""
    torch.manual_seed(0)
    model = _randomise_affine(nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2)))
    x = torch.randn(3, 4)
    groups = build_structural_groups(model, x)
    reversed_view = IndexView((6,), 0, tuple((5 - i,) for i in range(6)))
    broken = Group(
        "0",
        "0",
        tuple(
            Member(m.tensor, reversed_view) if m.tensor == "1.weight" else m
            for m in groups[0].members
        ),
    )
    selection = {"0": keep(6, [0, 1])}
    pruned, _ = apply_surgery(model, [broken], selection)
    with pytest.raises(VerificationError, match=r"on their own: \['0'\]"):
        verify(
            model, pruned, [broken], selection, x,
            inexact=groups.inexact, normalisations=groups.normalisations,
        )  # fmt: skip
    good, _ = apply_surgery(model, groups, selection)
    assert verify(model, good, groups, selection, x).complete


def test_a_normalisation_in_the_models_own_forward_stays_unverified() -> None:
    class ChannelGate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.out = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            y = self.conv(x)
            return self.out(y * torch.sigmoid(y.mean(1, keepdim=True)))

    torch.manual_seed(0)
    model = ChannelGate()
    x = torch.randn(1, 3, 4, 4)
    groups = build_structural_groups(model, x)
    selection = {"conv": keep(6, [2])}
    pruned = apply_surgery(model, groups, selection)[0]
    report = verify(model, pruned, groups, selection, x, exhaustive=True)
    assert report.unverified == ("conv",) and report.verified == () and not report.complete
    assert "model's own forward" in report.reasons["conv"]


def test_groups_without_normalisation_records_stay_unverified() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    x = torch.randn(2, 4)
    groups = build_structural_groups(model, x)
    selection = {"0": keep(6, [3])}
    pruned, _ = apply_surgery(model, groups, selection)
    report = verify(model, pruned, list(groups), selection, x, inexact=groups.inexact)
    assert report.unverified == ("0",) and "no record" in report.reasons["0"]


# --- real models -------------------------------------------------------------------------------


def _prune(model: nn.Module, inputs: Any) -> PruneResult:
    result = prunekit.prune(
        model,
        inputs,
        sparsity=0.5,
        granularity="channel",
        scope="layer",
        metrics=False,
        verify_exhaustive=True,
    )
    assert isinstance(result, PruneResult) and result.verification is not None
    return result


def test_torchvision_convnext_layer_norms_are_verified() -> None:
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()
    convnext = pytest.importorskip("torchvision.models.convnext")
    torch.manual_seed(0)
    settings = [convnext.CNBlockConfig(8, 16, 1), convnext.CNBlockConfig(16, None, 1)]
    model = convnext.ConvNeXt(settings, num_classes=5).eval()
    report = _prune(model, torch.randn(1, 3, 32, 32)).verification
    assert report is not None and report.complete
    assert set(report.verified_kept_reference) == {"features.0.0", "features.2.1"}
    assert report.relative_diff < 1e-12


@pytest.fixture(scope="module")
def transformers() -> Any:
    pytest.importorskip("transformers")
    from prunekit.compat.torchvision_shim import ensure_torchvision_ops

    ensure_torchvision_ops()  # transformers imports torchvision when it is installed
    import transformers as hf

    return hf


def _ids() -> dict[str, Tensor]:
    return {"input_ids": torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize(
    ("config", "model", "residual"),
    [
        ("BertConfig", "BertForSequenceClassification", "bert.embeddings.word_embeddings"),
        ("GPT2Config", "GPT2LMHeadModel", "transformer.wte"),
        ("LlamaConfig", "LlamaForCausalLM", "model.embed_tokens"),
    ],
    ids=["bert", "gpt2", "llama"],
)
def test_hf_residual_stream_is_pruned_and_verified(
    transformers: Any, config: str, model: str, residual: str
) -> None:
    kwargs = {
        "BertConfig": {
            "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
            "num_hidden_layers": 2, "max_position_embeddings": 16,
        },
        "GPT2Config": {"n_embd": 32, "n_head": 4, "n_layer": 2, "n_positions": 16},
        "LlamaConfig": {
            "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 64, "num_hidden_layers": 2, "max_position_embeddings": 16,
        },
    }[config]  # fmt: skip
    torch.manual_seed(0)
    cfg = getattr(transformers, config)(vocab_size=50, **kwargs)
    result = _prune(getattr(transformers, model)(cfg).eval(), _ids())
    report = result.verification
    assert report is not None and report.complete and report.unverified == ()
    assert report.verified_kept_reference == (residual,)
    assert int((~result.selection[residual]).sum()) == 16  # half the residual width is gone
    assert report.relative_diff < 1e-12
