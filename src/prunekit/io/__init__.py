"""Save and load (masked, later structurally pruned) models without pickle.

A save is a directory with ``model.safetensors`` (effective tensors under plain names, sparse ones
compressed as ``<name>.<part>``; masks that the zeros do not imply under ``__mask__/``) and
``prunekit.json`` (format version, tensor shapes, dtypes and encodings, the weights' SHA-256 and
per-tensor digests, the architecture to rebuild, the structural plan and user metadata).
"""

from prunekit.io.loading import RebuildHook, load
from prunekit.io.metadata import (
    FORMAT_VERSION,
    MASK_PREFIX,
    METADATA_FILE,
    ORIGINAL_PREFIX,
    WEIGHTS_FILE,
    SaveMetadata,
    TensorInfo,
)
from prunekit.io.metadata_read import read_metadata
from prunekit.io.saving import save

__all__ = [
    "FORMAT_VERSION",
    "MASK_PREFIX",
    "METADATA_FILE",
    "ORIGINAL_PREFIX",
    "WEIGHTS_FILE",
    "RebuildHook",
    "SaveMetadata",
    "TensorInfo",
    "load",
    "read_metadata",
    "save",
]
