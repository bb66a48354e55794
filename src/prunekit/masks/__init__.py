"""Reversible masks on parameters, kept through training, made permanent on request."""

from prunekit.masks.parametrize import (
    Mask,
    apply_masks,
    bake_masks,
    clone_model,
    is_masked,
    masks_of,
    remove_masks,
)

__all__ = [
    "Mask",
    "apply_masks",
    "bake_masks",
    "clone_model",
    "is_masked",
    "masks_of",
    "remove_masks",
]
