"""Whether one width step runs faster than another beyond the timing noise.

:func:`~prunekit.budget.latency.fastest_step` times a few layers at every output width of a
window, in one or more passes. :class:`StepEvidence` holds those rates (output channels per ms,
per layer relative to its best pass-mean) and compares steps by the mean rate at their multiples:
a step *beats* another when it is faster by more than a relative ``tie`` in every pass, and its
pass-averaged lead exceeds ``tie`` plus ``z`` standard errors. The standard error comes from the
spread between passes at each width (pooled over the widths of a layer), so a step whose mean
rests on two or three widths (32 and 16 in a window of 32) needs a lead that few widths can
carry: under a load average of 9-13 on 2 cores, one width's rate moved by 4.8% (standard
deviation) between passes of a ViT-B/16 MLP Linear in onnxruntime, more than any real difference
between the steps there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class StepEvidence:
    """Rates of each probed layer, ``runs[p][i][j]``: pass ``p``, layer ``i``, its ``j``-th width
    in ``widths[i]``."""

    def __init__(
        self, widths: Sequence[Sequence[int]], runs: Sequence[Sequence[Sequence[float]]]
    ) -> None:
        self.passes = len(runs)
        self.widths = [np.asarray(w) for w in widths]
        rates = [np.array([run[i] for run in runs], dtype=np.float64) for i in range(len(widths))]
        self.rates = [r / r.mean(axis=0).max() for r in rates]  # [passes, widths] per layer

    def _on(self, step: int) -> list[np.ndarray]:
        return [w % step == 0 for w in self.widths]

    def score(self, step: int, run: int | None = None) -> float:
        """Summed over the layers, the mean relative rate at multiples of ``step``, in pass
        ``run`` or averaged over the passes."""
        total = 0.0
        for rates, on in zip(self.rates, self._on(step), strict=True):
            values = rates.mean(axis=0) if run is None else rates[run]
            total += float(values[on].mean())
        return total

    def standard_error(self, a: int, b: int) -> float:
        """Of ``score(a) - score(b)``, from the spread between passes (0 with one pass)."""
        if self.passes < 2:
            return 0.0
        variance = 0.0
        for rates, on_a, on_b in zip(self.rates, self._on(a), self._on(b), strict=True):
            per_width = float(rates.var(axis=0, ddof=1).mean()) / self.passes
            n_a, n_b, both = on_a.sum(), on_b.sum(), (on_a & on_b).sum()
            variance += per_width * (1 / n_a + 1 / n_b - 2 * both / (n_a * n_b))
        return float(np.sqrt(max(variance, 0.0)))

    def beats(self, a: int, b: int, tie: float, z: float) -> bool:
        """Step ``a`` is faster than step ``b`` beyond ``tie`` in every pass and beyond ``tie``
        plus ``z`` standard errors on average."""
        every = all(self.score(a, p) > self.score(b, p) * (1 + tie) for p in range(self.passes))
        lead = self.score(a) - self.score(b)
        return every and lead > tie * self.score(b) + z * self.standard_error(a, b)

    def unbeaten(self, steps: Sequence[int], tie: float, z: float) -> int:
        """The smallest step no other step beats (the best on average is never beaten)."""
        return min(s for s in steps if not any(self.beats(t, s, tie, z) for t in steps))

    def margin(self, step: int, steps: Sequence[int]) -> float:
        """How much more ``step`` scores than the best smaller one of ``steps``, relative to it."""
        smaller = [self.score(s) for s in steps if s < step]
        return self.score(step) / max(smaller) - 1 if smaller else float("inf")
