"""Rules that tell prunekit how to read a layer type's parameters.

This is the only place that knows layer types. Granularities, estimators and selectors ask a rule
where a layer's output units lie (``out_dim``), where its inputs lie (``in_dim``), which other
parameters carry the output dimension (the bias), and in which dimension of the layer's output
activation the units appear. Structural surgery extends the same rules with how to shrink a layer.

A layer with parameters but no rule is refused by name; users declare a rule for their own layer
with ``LAYER_RULES.register("mylayer", LayerRule((MyLayer,), out_dim=0, in_dim=1))``.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import nn

from prunekit.errors import UnsupportedLayerError, exclude_hint
from prunekit.registry import Registry


@dataclass(frozen=True)
class LayerRule:
    """How to read one type of layer.

    Attributes:
        types: module classes the rule applies to (exact type or subclass).
        weight: name of the weight parameter.
        out_dim: dimension of the weight that indexes output units (rows, filters).
        in_dim: dimension of the weight that indexes input features or channels.
        out_params: other parameters whose dimension 0 indexes the same output units.
        output_dim: dimension of the layer's output activation that indexes output units.
    """

    types: tuple[type[nn.Module], ...]
    weight: str = "weight"
    out_dim: int = 0
    in_dim: int = 1
    out_params: tuple[str, ...] = ("bias",)
    output_dim: int = 1

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, self.types)

    def out_units_tied(self, module: nn.Module) -> bool:
        """True if the weight's out dimension does not index output units one-to-one."""
        return isinstance(module, nn.modules.conv._ConvTransposeNd) and module.groups > 1


LAYER_RULES: Registry[LayerRule] = Registry(
    "layer rule",
    {
        "linear": LayerRule((nn.Linear,), output_dim=-1),
        "conv": LayerRule((nn.Conv1d, nn.Conv2d, nn.Conv3d)),
        "conv_transpose": LayerRule(
            (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), out_dim=1, in_dim=0
        ),
    },
)


NOT_TARGETS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.PReLU,
    nn.MultiheadAttention,
)
"""Layer types with parameters that are not weight-pruning targets on their own."""


def rule_for(module: nn.Module) -> LayerRule | None:
    """The rule for ``module``'s type, or ``None`` if no rule matches."""
    for name in LAYER_RULES.names():
        rule = LAYER_RULES.get(name)
        if rule.matches(module):
            return rule
    return None


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """True if the module name matches one of the glob ``patterns`` (fnmatch syntax)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def prunable_layers(
    model: nn.Module,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> Iterator[tuple[str, nn.Module, LayerRule]]:
    """The layers whose name matches ``include`` and not ``exclude``, with their rules.

    A module that holds its own parameters and is named by a non-wildcard ``include`` pattern but
    has no rule raises :class:`UnsupportedLayerError`. Normalisation layers, embeddings and
    containers matched by a wildcard are not targets; any other module with parameters and no rule
    is reported in a warning that names it, so nothing is passed over silently.
    """
    explicit = [p for p in include if not any(c in p for c in "*?[")]
    found: set[str] = set()
    unruled: list[str] = []
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue  # the internals of masks (torch.nn.utils.parametrize), not layers
        if not matches_any(name, include) or matches_any(name, exclude):
            continue
        rule = rule_for(module)
        if rule is None:
            if name in explicit and any(True for _ in module.parameters(recurse=False)):
                raise UnsupportedLayerError(
                    f"layer {name!r} of type {type(module).__name__} has no pruning rule; "
                    f"declare one with prunekit.ops.LAYER_RULES.register(...), {exclude_hint(name)}"
                )
            if not isinstance(module, NOT_TARGETS) and any(
                True for _ in module.parameters(recurse=False)
            ):
                unruled.append(f"{name} ({type(module).__name__})")
            continue
        if getattr(module, rule.weight, None) is None:
            continue
        found.add(name)
        yield name, module, rule
    if unruled:
        warnings.warn(
            f"layers with parameters but no pruning rule are not pruned: {', '.join(unruled)}; "
            "declare a rule with prunekit.ops.LAYER_RULES.register(...) to prune them",
            stacklevel=2,
        )
    missing = [p for p in explicit if p not in found and not matches_any(p, exclude)]
    if missing:
        known = [n for n, m in model.named_modules() if n and rule_for(m) is not None]
        raise UnsupportedLayerError(
            f"no prunable layer named {missing[0]!r} in the model; prunable layers: {known[:20]}"
        )
