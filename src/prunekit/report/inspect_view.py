"""Rich tables of an :class:`~prunekit.analysis.inspect.Inspection`, laid out for 80 columns.

Four tables: the totals, the dependency groups (units, exactness, parameters, the layers each
couples and how), every layer with parameters (its parameters, MACs and the group that removes
its outputs), and the layers that cannot be pruned with the reason. When the model could not be
traced, the error comes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table

from prunekit.analysis.inspect import GroupInfo, Inspection, MemberInfo
from prunekit.report.tables import MISSING, format_count


def _table(title: str, *columns: str, right: Sequence[str] = (), show_header: bool = True) -> Table:
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
        collapse_padding=True,
        show_header=show_header,
    )
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", overflow="fold")
    return table


def _count(value: int | None) -> str:
    return MISSING if value is None else format_count(value)


def summary_table(ins: Inspection) -> Table:
    """Totals: model, inputs, parameters, MACs, groups, units, prunable layers."""
    table = _table(f"{ins.model}: what structural pruning can remove", "", "", show_header=False)
    table.columns[0].style = "bold"
    ruled = sum(1 for layer in ins.layers if layer.ruled)
    rows = [
        ("inputs", ins.inputs),
        ("parameters", _count(ins.params)),
        ("MACs", _count(ins.macs)),
        ("groups", f"{len(ins.groups)} ({len(ins.inexact)} inexact)"),
        ("units", format_count(ins.units)),
        ("prunable layers", f"{len(ins.prunable_layers)} of {ruled} linear/conv layers"),
    ]
    if ins.exclude:
        rows.append(("excluded", ", ".join(ins.exclude)))
    if ins.converted:
        rows.append(("heads", "units of " + ", ".join(ins.converted) + " (converted attention)"))
    for key, value in rows:
        table.add_row(key, value)
    return table


TOP_LEVEL = "(model)"
"""How the model itself is named where a module name is expected (its own parameters)."""


def _member_label(module: str, members: Sequence[MemberInfo]) -> str:
    roles = sorted({m.role for m in members if m.role})
    per_unit = max(m.per_unit for m in members)
    if not module:  # parameters of the model itself (class token, position embedding)
        module = "/".join(dict.fromkeys(m.tensor for m in members))
    label = f"{module} {'/'.join(roles)}" if roles else module
    return f"{label} ×{per_unit}" if per_unit > 1 else label


def couples(group: GroupInfo, max_layers: int = 8) -> str:
    """The layers a group touches, each with its role (``out``: its output units go, ``in``: its
    inputs shrink) and ``×k`` when every unit spans ``k`` positions (a head)."""
    by_module: dict[str, list[MemberInfo]] = {}
    for m in group.members:
        by_module.setdefault(m.module, []).append(m)
    labels = [_member_label(module, ms) for module, ms in by_module.items()]
    if len(labels) > max_layers:
        labels = [*labels[:max_layers], f"+{len(labels) - max_layers} more"]
    return ", ".join(labels)


def groups_table(ins: Inspection, *, max_layers: int = 8) -> Table:
    """One row per dependency group."""
    table = _table(
        "Groups", "group", "units", "exact", "params", "couples", right=("units", "params")
    )
    for g in ins.groups:
        exact = "yes" if g.exact else "no"
        table.add_row(
            g.name, format_count(g.n_units), exact, format_count(g.params), couples(g, max_layers)
        )
    return table


def layers_table(ins: Inspection) -> Table:
    """One row per module holding parameters; "pruned by" names the group that removes its
    output units (for a normalisation: the groups that remove its entries)."""
    table = _table(
        "Layers", "layer", "type", "params", "MACs", "pruned by", right=("params", "MACs")
    )
    for layer in ins.layers:
        table.add_row(
            layer.name or TOP_LEVEL,
            layer.type,
            format_count(layer.params),
            _count(layer.macs),
            layer.group or ("" if layer.ruled else ", ".join(layer.groups)) or MISSING,
        )
    return table


def blocked_table(ins: Inspection) -> Table:
    """The layers whose output units cannot be removed, and why."""
    table = _table("Cannot be pruned", "layer", "reason")
    for b in ins.blocked:
        table.add_row(b.layer or TOP_LEVEL, b.reason)
    return table


def error_table(ins: Inspection) -> Table:
    """The error that stopped tracing, with what still holds."""
    table = _table("Tracing failed: no groups", "error")
    table.columns[0].style = "red"
    table.add_row(ins.error or "")
    return table


def inspection_tables(ins: Inspection, *, max_layers: int = 8) -> list[Table]:
    """Every table of an inspection, in reading order (print each with a rich Console)."""
    tables = [summary_table(ins)]
    if ins.error:
        tables.append(error_table(ins))
    if ins.groups:
        tables.append(groups_table(ins, max_layers=max_layers))
    tables.append(layers_table(ins))
    if ins.blocked:
        tables.append(blocked_table(ins))
    return tables
