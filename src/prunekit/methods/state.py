"""A masked model's original (unmasked) tensors by plain name: re-exported from
:mod:`prunekit.recovery.originals`, where resumable training reads them too."""

from prunekit.recovery.originals import (
    load_originals,
    mask_buffer,
    original_state,
    original_tensor,
)

__all__ = ["load_originals", "mask_buffer", "original_state", "original_tensor"]
