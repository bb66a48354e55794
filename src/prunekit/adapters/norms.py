"""Normalisation layers: the one place that says what a BatchNorm is."""

from __future__ import annotations

from torch import nn

BATCHNORM_TYPES: tuple[type[nn.modules.batchnorm._BatchNorm], ...] = (
    nn.modules.batchnorm._BatchNorm,
)
"""BatchNorm1d/2d/3d, their lazy and synchronised variants."""

NORMALISATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm and InstanceNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)
"""PyTorch's normalisation layers (per-channel scale and shift, not weight-pruning targets)."""


def is_batchnorm(module: nn.Module, *, affine: bool = False, tracking: bool = False) -> bool:
    """True for a BatchNorm layer; with ``affine`` only one with a learnable scale, with
    ``tracking`` only one that keeps running statistics."""
    if not isinstance(module, BATCHNORM_TYPES):
        return False
    return (not affine or bool(module.affine)) and (
        not tracking or bool(module.track_running_stats)
    )


def batchnorm_layers(
    model: nn.Module, *, affine: bool = False, tracking: bool = False
) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every BatchNorm layer of ``model`` (see :func:`is_batchnorm`)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if is_batchnorm(m, affine=affine, tracking=tracking)
    ]


def is_normalisation(module: nn.Module) -> bool:
    """A normalisation layer: one of :data:`NORMALISATION_TYPES`, or a custom class whose name
    says so (``LlamaRMSNorm``, ``T5LayerNorm``)."""
    return isinstance(module, NORMALISATION_TYPES) or "norm" in type(module).__name__.lower()
