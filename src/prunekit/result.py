"""What :func:`prunekit.prune` returns, for every granularity: :class:`PruneResult`.

One type for masks, channel surgery and whole-block removal: the pruned ``model``, the ``plan``
(``None`` for masks), the stages' plain data (groups, scores, selection), the verification
report and before / after measurements; ``summary()`` prints a short table and ``save(dir)``
writes the model with everything :func:`prunekit.load` needs to rebuild it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from prunekit.config import PruneConfig
from prunekit.core.groups import Group, Masks, Scores, Selection
from prunekit.io import save as save_model
from prunekit.measure import ModelStats, Row, compare
from prunekit.measure.format import format_change, format_value

if TYPE_CHECKING:
    from prunekit.estimators import Estimator
    from prunekit.export import ExportReport
    from prunekit.measure import ExampleInputs
    from prunekit.surgery.plan import Plan
    from prunekit.surgery.verify import VerificationReport

_SHOWN_LAYERS = 12


@dataclass(frozen=True, repr=False)
class PruneResult:
    """What pruning did, as plain data.

    Attributes:
        model: the pruned model: masked (``plan is None``) or physically smaller.
        config: the validated options that produced it.
        groups / scores / selection: the groups scored, one score and one keep flag per unit.
        estimator: the estimator that scored them.
        granularity: the granularity's spec (``"element"``, ``"channel"``, ``"layer"``, ...).
        plan: what surgery removed (``None`` for masks); ``plan.to_json()`` is what a save holds.
        masks: the masks applied (``None`` after surgery).
        verification: the verification report (``None`` for masks or with ``verify=False``).
        before / after: measurements of the original and the pruned model (``None`` when
            ``metrics=False`` or when measuring failed: ``notes`` says why).
        kept_unverifiable: inexact groups kept whole because removing them made the model
            fail to run (a width written in code).
        notes: things the user should know that did not stop pruning (a failed measurement).
    """

    model: nn.Module
    config: PruneConfig
    groups: Sequence[Group]
    scores: Scores
    selection: Selection
    estimator: Estimator
    granularity: str
    plan: Plan | None = None
    masks: Masks | None = None
    verification: VerificationReport | None = None
    before: ModelStats | None = None
    after: ModelStats | None = None
    kept_unverifiable: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def structural(self) -> bool:
        """Whether units were removed physically (the model has new shapes)."""
        return self.plan is not None

    @property
    def removed_units(self) -> int:
        return sum(int((~keep).sum()) for keep in self.selection.values())

    @property
    def total_units(self) -> int:
        return sum(keep.numel() for keep in self.selection.values())

    @property
    def metrics(self) -> list[Row]:
        """Before / after rows (params, MACs, size, ...) with their ratios."""
        if self.before is None or self.after is None:
            return []
        return compare(self.before, self.after)

    @property
    def params_ratio(self) -> float | None:
        """Parameters after / before."""
        return _ratio(self.before, self.after, "params")

    @property
    def macs_ratio(self) -> float | None:
        """Multiply-accumulates after / before."""
        return _ratio(self.before, self.after, "macs")

    def layer_rows(self) -> list[tuple[str, int, int]]:
        """Per group: its name, units before and units kept."""
        return [(name, keep.numel(), int(keep.sum())) for name, keep in self.selection.items()]

    def summary(self, max_layers: int = _SHOWN_LAYERS) -> str:
        """A short plain-text table: what was pruned, params / MACs before and after, the
        groups that lost the most, and the verification."""
        how = "surgery" if self.structural else "masks"
        lines = [
            f"prunekit: {self.granularity} pruning by {self.estimator.name} ({how}), "
            f"{self.removed_units:,} of {self.total_units:,} units removed",
        ]
        lines += _metric_lines(self.metrics)
        lines += _layer_lines(self.layer_rows(), max_layers)
        lines.append(_verification_line(self))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def save(
        self,
        path: str | Path,
        *,
        arch: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the pruned model to the directory ``path`` (safetensors + ``prunekit.json``
        with the plan and the config); :func:`prunekit.load` rebuilds it. ``arch`` says how to
        rebuild the dense architecture without a model (see :func:`prunekit.io.save`);
        ``extra`` is free JSON metadata stored beside the config."""
        plan = self.plan.to_dict() if self.plan is not None else None
        metadata = {**dict(extra or {}), "prune_config": self.config.to_dict()}
        return save_model(self.model, path, arch=arch, plan=plan, extra=metadata)

    def __repr__(self) -> str:
        ratios = []
        if self.params_ratio is not None:
            ratios.append(f"params_ratio={self.params_ratio:.3f}")
        if self.macs_ratio is not None:
            ratios.append(f"macs_ratio={self.macs_ratio:.3f}")
        verified = "passed" if self.verification is not None else "off"
        if not self.structural:
            verified = "n/a (masks)"
        return (
            f"PruneResult(model={type(self.model).__name__}, granularity={self.granularity!r}, "
            f"estimator={self.estimator.name!r}, removed={self.removed_units}/{self.total_units}, "
            f"{', '.join([*ratios, f'verification={verified}'])})"
        )

    def export(
        self,
        path: str | Path,
        format: str = "onnx",
        *,
        example_inputs: ExampleInputs,
        **kwargs: Any,
    ) -> ExportReport:
        """Export the pruned model to ``path`` and check it against PyTorch in the target
        runtime (see :func:`prunekit.export.export_model`, which takes ``kwargs``:
        ``dynamic_batch``, ``opset``, ``check``, ``atol``)."""
        from prunekit.export import export_model

        return export_model(self.model, example_inputs, path, format=format, **kwargs)


def _ratio(before: ModelStats | None, after: ModelStats | None, attr: str) -> float | None:
    if before is None or after is None or not getattr(before, attr):
        return None
    return float(getattr(after, attr)) / float(getattr(before, attr))


def _metric_lines(rows: Sequence[Row]) -> list[str]:
    if not rows:
        return []
    lines = [f"  {'':<16}{'before':>16}{'after':>16}{'change':>10}"]
    for row in rows:
        if row.before is None and row.after is None:
            continue
        lines.append(
            f"  {row.name:<16}{format_value(row, row.before):>16}"
            f"{format_value(row, row.after):>16}{format_change(row):>10}"
        )
    return lines


def _layer_lines(rows: Sequence[tuple[str, int, int]], limit: int) -> list[str]:
    changed = sorted((r for r in rows if r[2] < r[1]), key=lambda r: r[2] / max(r[1], 1))
    if not changed:
        return ["  no unit removed"]
    lines = [f"  units kept per group ({len(changed)} of {len(rows)} changed, most cut first):"]
    for name, total, kept in changed[:limit]:
        lines.append(f"    {name:<44} {kept:>6} / {total:<6} ({kept / max(total, 1):.0%})")
    if len(changed) > limit:
        lines.append(f"    ... {len(changed) - limit} more")
    return lines


def _verification_line(result: PruneResult) -> str:
    report = result.verification
    if report is None:
        if result.structural:
            return "verification: off"
        return "verification: not needed (masks: the model computes the masked function)"
    line = (
        f"verification: passed, max |pruned - reference| = {report.max_abs_diff:.3g} "
        f"<= {report.tolerance:.3g} ({report.dtype})"
    )
    if result.kept_unverifiable:
        line += f"; kept whole (unverifiable): {', '.join(result.kept_unverifiable)}"
    return line
