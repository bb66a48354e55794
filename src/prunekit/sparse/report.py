"""What :func:`prunekit.sparse.sparsify` decided for each layer, with the times it measured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

DENSE = "dense"


@dataclass(frozen=True)
class LayerDecision:
    """One layer: its sparsity, the median time of the dense layer and of each sparse kernel
    tried (milliseconds, on the layer's input from the example), each kernel's speed-up over
    dense (the median of per-round ratios), what was chosen and why."""

    name: str
    kind: str
    shape: tuple[int, ...]
    sparsity: float
    chosen: str = DENSE
    note: str = ""
    dense_ms: float | None = None
    kernels_ms: Mapping[str, float] = field(default_factory=dict)
    speedups: Mapping[str, float] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        """The chosen kernel's speed-up over dense (None when dense was kept)."""
        return self.speedups.get(self.chosen)


@dataclass(frozen=True)
class SparsifyReport:
    """Every candidate layer's decision; ``max_abs_diff`` is the largest difference between the
    model's outputs on the example before and after the replacements."""

    layers: tuple[LayerDecision, ...]
    device: str
    threads: int | None
    max_abs_diff: float

    @property
    def replaced(self) -> list[str]:
        """Names of the layers now computed by a sparse kernel."""
        return [d.name for d in self.layers if d.chosen != DENSE]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "device": self.device,
            "threads": self.threads,
            "max_abs_diff": self.max_abs_diff,
            "layers": [
                {**asdict(d), "kernels_ms": dict(d.kernels_ms), "speedups": dict(d.speedups)}
                for d in self.layers
            ],
        }

    def table(self) -> str:
        """A plain-text table, one line per layer."""
        head = (
            f"{'layer':<24} {'sparsity':>8} {'dense ms':>9} {'best sparse ms':>22} {'chosen':>10}"
        )
        lines = [head]
        for d in self.layers:
            best = min(d.kernels_ms.items(), key=lambda kv: kv[1], default=None)
            best_text = f"{best[0]} {best[1]:.3f}" if best else "-"
            dense = f"{d.dense_ms:.3f}" if d.dense_ms is not None else "-"
            lines.append(
                f"{d.name:<24} {d.sparsity:>8.3f} {dense:>9} {best_text:>22} {d.chosen:>10}"
                f"  {d.note}"
            )
        return "\n".join(lines)
