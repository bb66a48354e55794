"""Structural rules: how each ATen operation maps units from its inputs to its outputs.

The tracer (:mod:`prunekit.graph.tracer`) runs the model once under a dispatch mode and calls the
rule of every ATen operation that touches a labelled tensor (one that carries units). A rule reads
the slots of its operands from the context, couples atoms that must be removed together, and sets
the slots of the outputs. Generic rules cover whole families (every op tagged ``pointwise``, every
pure data-movement op, reductions); layers with weights have rules in
:mod:`prunekit.graph.structural.layers`.

An operation without a rule is refused with its name and module path. To support a custom op, write
a rule and register it::

    from prunekit.graph.structural import OP_RULES, pointwise
    OP_RULES.register("mylib.fused_act", pointwise)

The rules are split by family: :mod:`.elementwise`, :mod:`.movement`, :mod:`.indexing`,
:mod:`.contraction` and :mod:`.layers` (ops that hold layer weights); :mod:`.registry` maps op
names to them.
"""

from prunekit.graph.structural.context import Rule, RuleContext, arg, first_tensor, item
from prunekit.graph.structural.elementwise import passthrough, pointwise
from prunekit.graph.structural.movement import movement, reshape_groups
from prunekit.graph.structural.registry import OP_RULES, rule_for_op

__all__ = [
    "OP_RULES",
    "Rule",
    "RuleContext",
    "arg",
    "first_tensor",
    "item",
    "movement",
    "passthrough",
    "pointwise",
    "reshape_groups",
    "rule_for_op",
]
