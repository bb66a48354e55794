"""LeNet-300-100 and LeNet-5, the classic MNIST networks used throughout the pruning literature."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models.base import ImageClassifier, check_widths


class LeNet300100(ImageClassifier):
    """The 784-300-100-10 fully connected network (LeCun et al. 1998, "Gradient-based learning
    applied to document recognition"), the MLP pruned in Han et al. 2015, "Learning both Weights
    and Connections for Efficient Neural Networks".

    ``flatten -> fc1 -> relu1 -> fc2 -> relu2 -> fc3``; ``hidden`` sets the two hidden widths.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        in_size: int = 28,
        hidden: tuple[int, int] = (300, 100),
    ) -> None:
        super().__init__(in_channels, num_classes, in_size)
        width1, width2 = check_widths(type(self).__name__, "hidden", hidden, length=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_channels * in_size * in_size, width1)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(width1, width2)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(width2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        x = self.relu2(self.fc2(x))
        return self.fc3(x)


class LeNet5(ImageClassifier):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as pruned in Han et al. 2015.

    ``conv1 (6@5x5, pad 2) -> relu1 -> pool1 -> conv2 (16@5x5) -> relu2 -> pool2 -> flatten ->
    fc1 (120) -> relu3 -> fc2 (84) -> relu4 -> fc3``. On 28x28 inputs this is the classic network
    (``fc1`` sees 16x5x5). Small inputs have no room for an unpadded ``conv2``: when the map after
    ``pool1`` is narrower than 6, ``conv2`` is padded by 2 instead, so 8x8 digits give
    8 -> 4 -> 4 -> 2 and ``fc1`` sees 16x2x2. ``fc1``'s input size always follows from ``in_size``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        in_size: int = 28,
        conv_channels: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
    ) -> None:
        super().__init__(in_channels, num_classes, in_size)
        name = type(self).__name__
        channels1, channels2 = check_widths(name, "conv_channels", conv_channels, length=2)
        width1, width2 = check_widths(name, "hidden", hidden, length=2)
        padding2, out_size = lenet5_geometry(in_size)
        self.conv1 = nn.Conv2d(in_channels, channels1, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(channels1, channels2, kernel_size=5, padding=padding2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(channels2 * out_size * out_size, width1)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(width1, width2)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(width2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


def lenet5_geometry(in_size: int) -> tuple[int, int]:
    """``(conv2 padding, side of the map fed to fc1)`` for square inputs of side ``in_size``.

    28 -> (0, 5): 28 -conv1-> 28 -pool1-> 14 -conv2-> 10 -pool2-> 5.
    8 -> (2, 2): 8 -conv1-> 8 -pool1-> 4 -conv2 (padded)-> 4 -pool2-> 2.
    """
    pooled = in_size // 2
    padding = 0 if pooled >= 6 else 2
    out_size = (pooled + 2 * padding - 4) // 2
    if out_size < 1:
        raise ConfigError(f"LeNet5: in_size must be at least 4, got {in_size}")
    return padding, out_size
