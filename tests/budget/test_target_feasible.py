"""A target search confirms only candidates that verified surgery would accept."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import prunekit
from prunekit.budget import Target, select_to_target
from prunekit.compat.torchvision_shim import ensure_torchvision_ops
from prunekit.core import SelectionConfig
from prunekit.graph import build_structural_groups
from prunekit.measure import count_macs
from prunekit.surgery import VerificationError
from prunekit.surgery.apply import apply_surgery


class WidthInCode(nn.Module):
    """The residual width 8 is written in ``forward``; with ``norm`` it is under a LayerNorm
    (its group is inexact, as a ViT's hidden width is)."""

    def __init__(self, norm: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.norm: nn.Module = nn.LayerNorm(8) if norm else nn.Identity()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).reshape(x.shape[0], 8)
        h = h + self.fc2(torch.relu(self.fc1(self.norm(h))))
        return self.head(h)


# MACs per sample: embed 3*8 + fc1 8*16 + fc2 16*8 + head 8*2 = 296; each fc1 unit is 8 + 8
EIGHT_FC1_UNITS_GONE = (296 - 8 * 16) / 296
LOW_EMBED = {"embed": torch.full((8,), 0.01), "fc1": torch.arange(1.0, 17.0)}


def test_an_inexact_group_that_breaks_the_model_is_kept_whole_and_the_rest_meet_the_target() -> (
    None
):
    torch.manual_seed(0)
    model, x = WidthInCode(norm=True).eval(), torch.randn(4, 3)
    groups = build_structural_groups(model, x)
    assert groups.inexact == {"embed"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = select_to_target(
            model, x, groups, LOW_EMBED, SelectionConfig(), Target("macs", EIGHT_FC1_UNITS_GONE)
        )
    assert found.kept_whole == ("embed",)
    assert found["embed"].tolist() == [True] * 8
    assert found["fc1"].tolist() == [False] * 8 + [True] * 8  # the 8 lowest go
    pruned, _ = apply_surgery(model, groups, found)
    assert count_macs(pruned, x).total == 4 * (296 - 8 * 16)


def test_a_failure_no_inexact_group_explains_is_a_verification_error_naming_the_group() -> None:
    torch.manual_seed(0)
    model, x = WidthInCode(norm=False).eval(), torch.randn(4, 3)
    groups = list(build_structural_groups(model, x))  # a plain list: traced again for inexact
    with pytest.raises(VerificationError, match=r"once the groups \['embed'\] are removed"):
        select_to_target(model, x, groups, LOW_EMBED, SelectionConfig(), Target("macs", 0.57))


def _vit() -> nn.Module:
    ensure_torchvision_ops()
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)  # zero-initialised: verification vacuous
    return model


def test_a_macs_target_on_a_vit_keeps_the_hidden_width_without_a_warning() -> None:
    """The hidden width of torchvision's ViT is fixed by its class token and position embedding:
    the search never confirms a candidate that removes it."""
    model, x = _vit(), torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = prunekit.prune(
            model, x, target={"macs": 0.7}, granularity="channel", scope="global"
        )
    assert result.macs_ratio == pytest.approx(0.7, abs=0.007)
    pruned = result.model
    assert isinstance(pruned, nn.Module)
    assert pruned.get_submodule("conv_proj").weight.shape[0] == 64
    assert bool(result.selection["conv_proj"].all())
    assert result.kept_unverifiable == ("conv_proj",)  # reported, as without a target
