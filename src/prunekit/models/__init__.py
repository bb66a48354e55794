"""Reference models for MNIST-sized images: LeNet-300-100, LeNet-5, a small VGG, a small ResNet.

``build_model("lenet-5", in_size=8)`` builds one by its registry name (see :data:`MODELS`).
Every model takes ``in_channels``, ``num_classes`` and ``in_size`` and offers ``example_input()``.
"""

from prunekit.models.base import ImageClassifier
from prunekit.models.lenet import LeNet5, LeNet300100, lenet5_geometry
from prunekit.models.resnet import BasicBlock, SmallResNet
from prunekit.models.vgg import SmallVGG
from prunekit.models.zoo import MODELS, build_model, model_args

__all__ = [
    "MODELS",
    "BasicBlock",
    "ImageClassifier",
    "LeNet5",
    "LeNet300100",
    "SmallResNet",
    "SmallVGG",
    "build_model",
    "lenet5_geometry",
    "model_args",
]
