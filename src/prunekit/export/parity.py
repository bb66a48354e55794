"""Parity between a PyTorch model and its export: the largest difference over every output.

A difference counts against ``atol * max(1, max |reference|)`` for each output: absolute for
outputs within [-1, 1], relative to the output's largest magnitude beyond that (float32
round-off grows with the values). NaN or infinity on either side always fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from prunekit.export.report import ExportError


@dataclass(frozen=True)
class Parity:
    """The largest absolute and relative difference over the outputs compared."""

    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0

    def merge(self, other: Parity) -> Parity:
        return Parity(
            max(self.max_abs_diff, other.max_abs_diff), max(self.max_rel_diff, other.max_rel_diff)
        )


def compare_outputs(
    reference: Sequence[Tensor],
    exported: Sequence[np.ndarray],
    *,
    atol: float,
    where: str,
) -> Parity:
    """Compare the exported model's outputs with PyTorch's, output by output; ``where`` says
    what ran (for the error), e.g. ``"onnxruntime at batch 3"``. Raises :class:`ExportError`
    naming the output index and the difference when one is off."""
    if len(reference) != len(exported):
        raise ExportError(
            f"parity check ({where}): the exported model returns {len(exported)} output(s), "
            f"PyTorch returns {len(reference)}"
        )
    result = Parity()
    for index, (ref_t, got_raw) in enumerate(zip(reference, exported, strict=True)):
        ref = ref_t.detach().cpu().double().numpy()
        got = np.asarray(got_raw, dtype=np.float64)
        if ref.shape != got.shape:
            raise ExportError(
                f"parity check ({where}): output {index} has shape {tuple(got.shape)}, "
                f"PyTorch gives {tuple(ref.shape)}"
            )
        if not (np.isfinite(ref).all() and np.isfinite(got).all()):
            side = "PyTorch's" if not np.isfinite(ref).all() else "the exported"
            raise ExportError(
                f"parity check ({where}): output {index} of {side} model holds NaN or infinity"
            )
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        diff = float(np.abs(ref - got).max()) if ref.size else 0.0
        tolerance = atol * max(1.0, scale)
        if diff > tolerance:
            raise ExportError(
                f"parity check ({where}): output {index} differs from PyTorch by {diff:.3g} "
                f"(max |output| {scale:.3g}, tolerance {tolerance:.3g})"
            )
        result = result.merge(Parity(diff, diff / scale if scale > 0 else diff))
    return result
