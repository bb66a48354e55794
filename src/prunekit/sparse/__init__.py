"""Sparse weights that pay: a compressed file format, and sparse execution where it is faster.

- :func:`save_compressed` / :func:`load_compressed`: safetensors files with each sparse tensor as
  a bitmask, CSR or block-CSR (whichever is smallest), exact round trip.
- :func:`sparsify`: replaces sparse ``nn.Linear`` layers by CSR / block-CSR (CPU, CUDA) or 2:4
  semi-structured (CUDA) modules, and sparse ``nn.Conv2d`` layers by CSR / block-CSR matrix
  products, only where a measurement on the example says they are faster,
  and reports every decision with its times.
"""

from prunekit.sparse.conv import SparseConv2d
from prunekit.sparse.execute import densify, sparsify
from prunekit.sparse.files import COMPRESSED_FORMAT, save_compressed
from prunekit.sparse.loading import load_compressed, read_schema
from prunekit.sparse.modules import SemiStructuredLinear, SparseLinear, is_two_of_four
from prunekit.sparse.report import LayerDecision, SparsifyReport

__all__ = [
    "COMPRESSED_FORMAT",
    "LayerDecision",
    "SemiStructuredLinear",
    "SparseConv2d",
    "SparseLinear",
    "SparsifyReport",
    "densify",
    "is_two_of_four",
    "load_compressed",
    "read_schema",
    "save_compressed",
    "sparsify",
]
