"""The ``bn_scale`` estimator (network slimming): hand-set scales, coupled groups, clear errors,
and the channels ``prunekit.prune`` removes with it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import prunekit
from prunekit.errors import ConfigError
from prunekit.estimators import get_estimator
from prunekit.graph import build_structural_groups
from prunekit.methods import bn_scale_scores


class ResidualCNN(nn.Module):
    """``bn1(conv1(x))`` and ``bn2(conv2(.))`` added: both BatchNorms scale the same channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return self.head(y + self.bn2(self.conv2(y)))


def vgg_like() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


def set_scales(bn: nn.Module, values: list[float]) -> None:
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(values))


def test_scores_are_the_absolute_scales_summed_over_coupled_batchnorms() -> None:
    model = ResidualCNN()
    set_scales(model.bn1, [0.5, -2.0, 0.1])
    set_scales(model.bn2, [1.0, 0.25, -0.3])
    groups = build_structural_groups(model, torch.randn(1, 1, 6, 6))
    scores = get_estimator("bn-scale").score(model, groups)
    coupled = [g for g in groups if any(m.tensor == "bn2.weight" for m in g.members)]
    assert len(coupled) == 1 and any(m.tensor == "bn1.weight" for m in coupled[0].members)
    assert scores[coupled[0].name].tolist() == pytest.approx([1.5, 2.25, 0.4])
    assert bn_scale_scores(model, groups)[coupled[0].name].tolist() == pytest.approx(
        [1.5, 2.25, 0.4]
    )


def test_aliases_name_the_same_estimator() -> None:
    assert type(get_estimator("bn-scale")) is type(get_estimator("slimming"))
    assert get_estimator("BN_SCALE").name == "bn_scale"


def test_prune_removes_the_channels_with_the_smallest_scales() -> None:
    model = vgg_like()
    set_scales(model[1], [0.9, 0.01, 0.8, 0.02])
    set_scales(model[4], [0.3, 0.4, 0.05, 0.5, 0.06, 0.7])
    result = prunekit.prune(
        model,
        torch.randn(1, 1, 8, 8),
        sparsity=0.5,
        granularity="channel",
        estimator="bn-scale",
        scope="layer",
    )
    pruned = result.model
    assert pruned[0].out_channels == 2 and pruned[3].out_channels == 3
    assert pruned[1].weight.tolist() == pytest.approx([0.9, 0.8])
    assert pruned[4].weight.tolist() == pytest.approx([0.4, 0.5, 0.7])


def test_a_group_without_batchnorm_is_an_error_that_names_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"bn_scale.*group '0'.*no BatchNorm scale"):
        prunekit.prune(
            model,
            torch.randn(1, 1, 6, 6),
            sparsity=0.5,
            granularity="channel",
            estimator="bn-scale",
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_element_groups_are_refused_with_a_pointer_to_channels() -> None:
    model = vgg_like()
    with pytest.raises(ConfigError, match="channel"):
        prunekit.prune(model, sparsity=0.5, granularity="element", estimator="bn-scale")


def test_surgery_without_data_warns_that_batchnorm_statistics_are_stale() -> None:
    import warnings

    model, x = vgg_like(), torch.randn(1, 1, 8, 8)
    with pytest.warns(UserWarning, match=r"2 BatchNorm layer\(s\) keep the dense model's"):
        prunekit.prune(model, x, sparsity=0.5, granularity="channel", metrics=False)
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opted_out = prunekit.prune(
            model, x, sparsity=0.5, granularity="channel", metrics=False, recalibrate=False
        )
        with_data = prunekit.prune(
            model, x, sparsity=0.5, granularity="channel", metrics=False, data=batches
        )
    kept = opted_out.model[1].running_mean
    assert torch.equal(kept, model[1].running_mean[opted_out.selection["0"]])  # only sliced
    assert not torch.equal(with_data.model[1].running_mean, kept)  # re-estimated on the data
