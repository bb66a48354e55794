"""A small VGG-style network of conv-BN-ReLU stages for 28x28 (or smaller) images."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models.base import ImageClassifier, check_positive


class SmallVGG(ImageClassifier):
    """A VGG-style network (Simonyan & Zisserman 2015) sized for MNIST, with batch norm after
    every convolution as in the VGG variants pruned by network slimming (Liu et al. 2017) and
    L1-norm filter pruning (Li et al. 2017).

    ``features`` holds stages ``stage1 .. stageS``; each holds ``convs_per_stage`` blocks
    ``convK (3x3, pad 1) -> bnK -> reluK`` and ends in ``pool`` (2x2 max). Stage ``i`` (from 1)
    has ``width * 2**(i-1)`` channels. Then ``avgpool`` (global average) -> ``flatten`` -> ``fc``.
    The global average makes the classifier independent of ``in_size``, which only has to
    survive the ``num_stages`` halvings (at least ``2**num_stages``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        in_size: int = 28,
        width: int = 16,
        num_stages: int = 3,
        convs_per_stage: int = 2,
    ) -> None:
        super().__init__(in_channels, num_classes, in_size)
        name = type(self).__name__
        check_positive(name, "width", width)
        check_positive(name, "num_stages", num_stages)
        check_positive(name, "convs_per_stage", convs_per_stage)
        if in_size < 2**num_stages:
            raise ConfigError(
                f"{name}: in_size {in_size} is too small for {num_stages} stages of 2x2 pooling "
                f"(needs at least {2**num_stages})"
            )
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for stage in range(1, num_stages + 1):
            out_channels = width * 2 ** (stage - 1)
            stages[f"stage{stage}"] = _stage(channels, out_channels, convs_per_stage)
            channels = out_channels
        self.features = nn.Sequential(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.avgpool(self.features(x))))


def _stage(in_channels: int, out_channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` conv-BN-ReLU blocks then a 2x2 max pool, with readable member names."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for k in range(1, num_convs + 1):
        source = in_channels if k == 1 else out_channels
        layers[f"conv{k}"] = nn.Conv2d(source, out_channels, 3, padding=1, bias=False)
        layers[f"bn{k}"] = nn.BatchNorm2d(out_channels)
        layers[f"relu{k}"] = nn.ReLU()
    layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)
