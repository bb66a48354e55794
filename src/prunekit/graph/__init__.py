"""Structural tracing: which slices of which tensors must be removed together.

``build_structural_groups(model, example_inputs)`` runs the model once under an ATen dispatch mode,
propagates unit labels through every operation (see :mod:`prunekit.graph.atoms`) and returns one
:class:`~prunekit.core.groups.Group` per set of coupled units. See ``docs/structural.md``.
"""

from prunekit.graph.blocks import ResidualBlock, find_residual_blocks
from prunekit.graph.build import StructuralGroups, build_structural_groups, groups_from_trace
from prunekit.graph.tracer import Family, StructureTrace, trace

__all__ = [
    "Family",
    "ResidualBlock",
    "StructuralGroups",
    "StructureTrace",
    "build_structural_groups",
    "find_residual_blocks",
    "groups_from_trace",
    "trace",
]
