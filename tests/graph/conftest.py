"""Small hand-built modules, one per coupling pattern the structural tracer must handle.

Tests get them through the ``nets`` fixture (name -> (class, input shape)) or, to run once per
net, by asking for ``net_name``. Tiny tensors run single-threaded (threads only cost time here).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBNChain(nn.Module):
    """Conv -> BN -> ReLU -> Conv -> BN -> ReLU -> pool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class LinearChain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 6)
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(torch.tanh(self.fc2(F.gelu(self.fc1(x)))))


class FlattenIntoLinear(nn.Module):
    """A conv output flattened (channel-major) into a Linear: one channel = 16 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3, padding=1)
        self.fc1 = nn.Linear(5 * 4 * 4, 6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv(x))
        return self.fc2(F.relu(self.fc1(x.view(x.shape[0], -1))))


class Residual(nn.Module):
    """Two residual blocks: the stem and both blocks' last convs share one channel space."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a1 = nn.Conv2d(8, 4, 3, padding=1)
        self.a2 = nn.Conv2d(4, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.b1 = nn.Conv2d(8, 5, 1)
        self.b2 = nn.Conv2d(5, 8, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = F.relu(x + self.bn(self.a2(F.relu(self.a1(x)))))
        x = x + self.b2(F.relu(self.b1(x)))
        return self.head(x.mean((2, 3)))


class DenseConcat(nn.Module):
    """DenseNet style: each layer reads the concat of all earlier outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.l1 = nn.Conv2d(4, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(7)
        self.l2 = nn.Conv2d(7, 3, 3, padding=1)
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = torch.cat([x, F.relu(self.l1(x))], dim=1)
        x = torch.cat([x, self.l2(F.relu(self.bn(x)))], dim=1)
        return self.head(x)


class SplitChunk(nn.Module):
    """chunk into two halves processed separately, then split with fixed sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.left = nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 6, 1)
        self.out = nn.Conv2d(10, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        y = torch.cat([self.left(a), self.right(b)], dim=1)
        return self.out(y)


class Depthwise(nn.Module):
    """MobileNet style: pointwise -> depthwise -> grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.pw = nn.Conv2d(3, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.dw2 = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.gc = nn.Conv2d(16, 8, 3, padding=1, groups=4)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu6(self.bn(self.pw(x)))
        return self.out(F.relu(self.gc(self.dw2(self.dw(x)))))


class SqueezeExcite(nn.Module):
    """SE block: the channel scale multiplies the feature map channel by channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.se1 = nn.Conv2d(8, 2, 1)
        self.se2 = nn.Conv2d(2, 8, 1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.silu(self.conv(x))
        s = torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))))
        return self.out(x * s)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit: chunk, one branch convolved, concat, channel shuffle by reshape."""

    def __init__(self, native: bool = False) -> None:
        super().__init__()
        self.native = native
        self.stem = nn.Conv2d(3, 8, 1)
        self.branch = nn.Sequential(
            nn.Conv2d(4, 4, 1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1, groups=4),
            nn.BatchNorm2d(4),
        )
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.stem(x).chunk(2, dim=1)
        y = torch.cat([x1, self.branch(x2)], dim=1)
        y = F.channel_shuffle(y, 2) if self.native else channel_shuffle(y, 2)
        return self.out(y)


class Transposed(nn.Module):
    """Encoder-decoder with ConvTranspose2d."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(6, 5, 2, stride=2)
        self.bn = nn.BatchNorm2d(5)
        self.out = nn.Conv2d(5, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.relu(self.bn(self.up(F.relu(self.down(x))))))


class Norms(nn.Module):
    """GroupNorm after a conv, LayerNorm over the features of a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.fc = nn.Linear(8, 6)
        self.ln = nn.LayerNorm(6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.gn(self.conv(x))).mean((2, 3))
        return self.head(self.ln(F.relu(self.fc(x))))


class SharedModule(nn.Module):
    """One conv called twice: its channels are coupled across both calls."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 1)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(6)
        self.bn_b = nn.BatchNorm2d(6)
        self.out = nn.Conv2d(6, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.bn_a(self.shared(x)))
        x = F.relu(self.bn_b(self.shared(x)))
        return self.out(x)


class PReLUInstanceNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.InstanceNorm2d(6, affine=True)
        self.act = nn.PReLU(6)
        self.out = nn.Conv2d(6, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.norm(self.conv(x))))


NETS: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
    "conv_bn_chain": (ConvBNChain, (2, 3, 6, 6)),
    "linear_chain": (LinearChain, (3, 5)),
    "flatten_linear": (FlattenIntoLinear, (2, 2, 4, 4)),
    "residual": (Residual, (2, 3, 5, 5)),
    "dense_concat": (DenseConcat, (2, 3, 5, 5)),
    "split_chunk": (SplitChunk, (2, 3, 4, 4)),
    "depthwise": (Depthwise, (2, 3, 5, 5)),
    "squeeze_excite": (SqueezeExcite, (2, 3, 5, 5)),
    "shuffle_reshape": (ShuffleBlock, (2, 3, 4, 4)),
    "transposed": (Transposed, (2, 3, 6, 6)),
    "norms": (Norms, (2, 3, 5, 5)),
    "shared_module": (SharedModule, (2, 3, 4, 4)),
    "prelu_instance_norm": (PReLUInstanceNorm, (2, 3, 4, 4)),
}


class PixelShuffleNet(nn.Module):
    """Sub-pixel upsampling: 4 * 3 channels become 3 channels at twice the resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.mid = nn.Conv2d(3, 5, 1)
        self.out = nn.Conv2d(5, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.relu(self.mid(F.pixel_shuffle(self.conv(x), 2))))


class NativeShuffle(ShuffleBlock):
    def __init__(self) -> None:
        super().__init__(native=True)


NETS["shuffle_native"] = (NativeShuffle, (2, 3, 4, 4))
NETS["pixel_shuffle"] = (PixelShuffleNet, (2, 3, 4, 4))


@pytest.fixture(scope="session")
def nets() -> dict[str, tuple[type[nn.Module], tuple[int, ...]]]:
    return NETS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "net_name" in metafunc.fixturenames:
        metafunc.parametrize("net_name", sorted(NETS))


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
