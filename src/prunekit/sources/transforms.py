"""Image preprocessing for image-folder data: a model's own eval transform, or one derived from
the input shape the model expects.

torchvision's classifiers were trained on ImageNet and evaluated on a resize to 256, a centre crop
of 224 and the ImageNet mean/std (He et al. 2016 and the torchvision reference scripts); timm
models carry their own data config (``timm.data.resolve_data_config``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from prunekit.compat.torchvision_shim import ensure_torchvision_ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_eval_transform(resize: int = 256, crop: int = 224) -> Callable[[Any], Tensor]:
    """Resize the short side to ``resize``, centre-crop ``crop``, scale to [0, 1], normalise."""
    ensure_torchvision_ops()
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def timm_transform(model: nn.Module) -> Callable[[Any], Tensor]:
    """The eval transform timm resolves from the model's pretrained config."""
    ensure_torchvision_ops()
    from timm.data import create_transform, resolve_data_config

    return create_transform(**resolve_data_config({}, model=model))


def shape_transform(input_shape: tuple[int, ...]) -> Callable[[Any], Tensor]:
    """A transform giving ``input_shape[1:]`` (``C, H, W``) tensors in [0, 1]: resize to ``H x W``
    and convert to ``C`` channels (grey for 1, RGB for 3, grey repeated otherwise)."""
    channels, height, width = (int(v) for v in input_shape[-3:])
    ensure_torchvision_ops()
    from torchvision import transforms

    return transforms.Compose(
        [
            _ToChannels(channels),
            transforms.Resize((height, width)),
            transforms.ToTensor(),
            _RepeatChannels(channels),
        ]
    )


class _ToChannels:
    """Convert a PIL image to grey (``L``) for one channel, else to ``RGB`` (or grey to repeat)."""

    def __init__(self, channels: int) -> None:
        self.mode = "RGB" if channels == 3 else "L"

    def __call__(self, image: Any) -> Any:
        return image.convert(self.mode)


class _RepeatChannels:
    """Repeat a one-channel tensor to ``channels`` channels (for C other than 1 and 3)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, image: Tensor) -> Tensor:
        if image.shape[0] == self.channels:
            return image
        return image[:1].repeat(self.channels, 1, 1)
