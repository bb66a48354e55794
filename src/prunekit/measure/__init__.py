"""Measurement: params, nonzeros, MACs (dense and effective), size on disk, latency, task metrics.

Everything here reads a model without changing it; masked models are measured through their
effective (masked) tensors, as if the masks were baked.
"""

from prunekit.measure.effective import effective_parameters, effective_state_dict
from prunekit.measure.inputs import ExampleInputs, call_model, eval_mode
from prunekit.measure.latency import Latency, measure_latency
from prunekit.measure.macs import (
    MacCount,
    count_effective_macs,
    count_macs,
    effective_macs,
    layer_macs,
)
from prunekit.measure.params import (
    LayerStats,
    count_nonzeros,
    count_params,
    layer_sparsity,
)
from prunekit.measure.size import (
    decode_sparse,
    dense_size_bytes,
    encode_dense,
    encode_sparse,
    sparse_size_bytes,
)
from prunekit.measure.summary import EvalFn, ModelStats, Row, compare, measure

__all__ = [
    "EvalFn",
    "ExampleInputs",
    "Latency",
    "LayerStats",
    "MacCount",
    "ModelStats",
    "Row",
    "call_model",
    "compare",
    "count_effective_macs",
    "count_macs",
    "count_nonzeros",
    "count_params",
    "decode_sparse",
    "dense_size_bytes",
    "effective_macs",
    "effective_parameters",
    "effective_state_dict",
    "encode_dense",
    "encode_sparse",
    "eval_mode",
    "layer_macs",
    "layer_sparsity",
    "measure",
    "measure_latency",
    "sparse_size_bytes",
]
