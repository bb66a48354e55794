"""Layer knowledge in one place: a rule per operation type (see :mod:`prunekit.ops.rules`)."""

from prunekit.ops.rules import LAYER_RULES, LayerRule, prunable_layers, rule_for

__all__ = ["LAYER_RULES", "LayerRule", "prunable_layers", "rule_for"]
