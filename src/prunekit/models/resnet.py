"""A small residual network (ResNet-8 by default) for 28x28 (or smaller) images."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models.base import ImageClassifier, check_positive, check_widths


class BasicBlock(nn.Module):
    """The two-convolution residual block of He et al. 2016, "Deep Residual Learning for Image
    Recognition": ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or ``downsample`` (1x1 conv + BN, as in torchvision) when the
    stride or the channel count changes. The residual add couples the output channels of
    ``bn2`` with those of the shortcut: channel pruning must remove them together.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + shortcut)


class SmallResNet(ImageClassifier):
    """A CIFAR-style ResNet (He et al. 2016, section 4.2) for MNIST-sized images.

    ``conv1 (3x3) -> bn1 -> relu1 -> layer1 .. layerS -> avgpool -> flatten -> fc``. Stage ``i``
    (from 1) is ``blocks[i-1]`` :class:`BasicBlock` s of ``width * 2**(i-1)`` channels; every
    stage after the first halves the resolution in its first block. The default
    ``blocks=(1, 1, 1)`` is ResNet-8 (1 + 3 x 2 convolutions + 1 linear layer); ``(3, 3, 3)`` is
    ResNet-20. The global average pool makes the network accept any ``in_size``; the argument is
    kept so every reference model takes the same geometry arguments.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        in_size: int = 28,
        width: int = 16,
        blocks: tuple[int, ...] = (1, 1, 1),
    ) -> None:
        super().__init__(in_channels, num_classes, in_size)
        name = type(self).__name__
        check_positive(name, "width", width)
        blocks = check_widths(name, "blocks", blocks, length=None)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        channels = width
        for stage, count in enumerate(blocks, start=1):
            out_channels = width * 2 ** (stage - 1)
            stride = 1 if stage == 1 else 2
            layer = [BasicBlock(channels, out_channels, stride)]
            layer += [BasicBlock(out_channels, out_channels) for _ in range(count - 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
            channels = out_channels
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.flatten(self.avgpool(x)))
