"""Sparse weights that pay: a compressed file format, and sparse execution where it is faster.

- :func:`save_compressed` / :func:`load_compressed`: safetensors files with each sparse tensor as
  a bitmask, CSR or block-CSR (whichever is smallest), exact round trip.
"""

from prunekit.sparse.files import COMPRESSED_FORMAT, save_compressed
from prunekit.sparse.loading import load_compressed, read_schema

__all__ = ["COMPRESSED_FORMAT", "load_compressed", "read_schema", "save_compressed"]
