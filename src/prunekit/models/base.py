"""What every reference model shares: its input geometry, class count and an example input."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ConfigError


class ImageClassifier(nn.Module):
    """Base of the reference models: square images ``[N, in_channels, in_size, in_size]`` in,
    logits ``[N, num_classes]`` out.

    Tracing and measuring need an input of the right shape; :meth:`example_input` gives one, so
    callers need not remember each model's geometry.
    """

    def __init__(self, in_channels: int, num_classes: int, in_size: int) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = check_positive(name, "in_channels", in_channels)
        self.num_classes = check_positive(name, "num_classes", num_classes)
        self.in_size = check_positive(name, "in_size", in_size)

    def example_input(self, batch_size: int = 2) -> torch.Tensor:
        """A random input batch of the shape this model expects, on the model's device."""
        device = next(self.parameters()).device
        shape = (batch_size, self.in_channels, self.in_size, self.in_size)
        return torch.randn(shape, device=device)


def check_positive(model: str, arg: str, value: int) -> int:
    """Return ``value`` if it is a positive int, else raise :class:`ConfigError` naming both."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{model}: {arg} must be a positive integer, got {value!r}")
    return value


def check_widths(
    model: str, arg: str, values: tuple[int, ...], length: int | None
) -> tuple[int, ...]:
    """Return ``values`` as a tuple if all are positive ints (and there are ``length`` of them)."""
    values = tuple(values)
    if length is not None and len(values) != length:
        raise ConfigError(f"{model}: {arg} needs {length} values, got {values!r}")
    if not values:
        raise ConfigError(f"{model}: {arg} needs at least one value")
    for value in values:
        check_positive(model, arg, value)
    return values
