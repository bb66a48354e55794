"""Per-tensor storage encodings shared by every save path and by size measurement.

- :mod:`~prunekit.formats.bits`: bit-exact views, the packed row bitmask;
- :mod:`~prunekit.formats.encodings` / :mod:`~prunekit.formats.decoding`: one tensor as dense,
  ``sparse-bitmask``, ``sparse-csr`` or ``sparse-bsr`` (the smallest), and back, checked;
- :mod:`~prunekit.formats.tables`: a set of named tensors as safetensors entries plus the record
  of how each was encoded.

This package sits below :mod:`prunekit.io`, :mod:`prunekit.measure` and :mod:`prunekit.sparse`,
so all three use one implementation.
"""

from prunekit.formats.decoding import decode
from prunekit.formats.encodings import BITMASK, BSR, CSR, DENSE, FORMATS, Encoded, encode, encode_as
from prunekit.formats.tables import PARTS, Entry, decode_tensors, encode_tensors

__all__ = [
    "BITMASK",
    "BSR",
    "CSR",
    "DENSE",
    "FORMATS",
    "PARTS",
    "Encoded",
    "Entry",
    "decode",
    "decode_tensors",
    "encode",
    "encode_as",
    "encode_tensors",
]
