"""Search dimensions: one keep ratio per layer (``space="group"``) or per stage (``"stage"``).

A deep network has dozens of prunable layers, and a sampler such as TPE or CMA-ES needs many
trials per dimension. Layers of one stage (a ResNet's ``layer2``, a VGG's ``stage3``) see
feature maps of one size and usually tolerate similar sparsities, so searching one keep ratio
per stage, shared by its layers, cuts the dimensions to a handful (the per-stage width
multipliers of AutoSlim / FastNAS-style searches). A layer's stage is, in order of precedence:

1. the stage of the first pattern of ``stages`` (glob -> stage name) its name matches;
2. with ``stages=d`` (an int), the first ``d`` components of its name (``layer2.1.conv1`` ->
   ``layer2`` for ``d=1``);
3. with ``stages="resolution"``, the spatial size of its output feature maps: layers whose
   outputs have the same height and width share a stage, named ``res56x56`` (``res28`` for a
   1-d map), so a network whose blocks are not grouped by name (MobileNetV2's ``features.1``
   to ``features.17``) still gets one stage per resolution (CNNs are designed in stages that
   change width where the resolution changes). A layer whose output has no spatial
   dimensions (a Linear layer) falls back to rule 4;
4. by default, its parent module's name without trailing block indices
   (``layer2.1.conv1`` -> ``layer2``, ``features.stage3.conv1`` -> ``features.stage3``); a
   top-level layer (``conv1``, ``fc``) is a stage of its own.

A resolution is the layer's own output: the 1x1 convolution that expands a block's input
before a strided depthwise convolution belongs to the resolution before the stride.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from prunekit.errors import ConfigError

SPACES: tuple[str, ...] = ("group", "stage")
"""Search spaces: one dimension per prunable layer, or per stage."""

RESOLUTION = "resolution"
"""``stages="resolution"``: layers with output feature maps of one spatial size share a stage."""

StageRule: TypeAlias = int | Mapping[str, str] | str | None
"""How layers are put in stages: a name depth, ``{glob: stage}``, ``"resolution"`` or the
default name rule (``None``)."""


@dataclass(frozen=True)
class Param:
    """One searched keep ratio (``[low, 1]``) and the layers' override patterns it sets."""

    name: str
    low: float
    patterns: tuple[str, ...]


def stage_of(layer: str, depth: int | None = None) -> str:
    """The stage of ``layer`` by its name (rules 2 and 4 of the module docs)."""
    parts = layer.split(".")
    if depth is not None:
        return ".".join(parts[:depth])
    parent = parts[:-1]
    while parent and parent[-1].isdigit():
        parent.pop()
    return ".".join(parent) or layer


def resolution_name(size: Sequence[int]) -> str:
    """The stage name of a feature-map size: ``(56, 56)`` -> ``"res56x56"``."""
    return "res" + "x".join(str(int(n)) for n in size)


def check_stages(stages: Any) -> StageRule:
    """``stages`` checked (an int >= 1, a mapping of globs to stage names, ``"resolution"`` or
    ``None``), the rule's name normalised."""
    if stages is None or isinstance(stages, Mapping):
        return stages
    if isinstance(stages, str) and stages.strip().lower() == RESOLUTION:
        return RESOLUTION
    if isinstance(stages, int) and not isinstance(stages, bool) and stages >= 1:
        return stages
    raise ConfigError(
        f"search: stages must be a name depth >= 1, a mapping {{glob: stage}} or "
        f"{RESOLUTION!r}, got {stages!r}"
    )


def assign_stages(
    layers: Sequence[str],
    stages: StageRule = None,
    *,
    sizes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, str]:
    """Layer name -> stage name for each of ``layers`` (see the module docs); ``sizes`` (layer
    -> spatial size of its output feature maps, missing for a non-spatial layer) is needed by
    ``stages="resolution"``."""
    rule = check_stages(stages)
    if rule == RESOLUTION and sizes is None:
        raise ConfigError("search: stages='resolution' needs the layers' feature-map sizes")
    out = {}
    for layer in layers:
        if isinstance(rule, Mapping):
            mapped = next((s for p, s in rule.items() if fnmatch.fnmatchcase(layer, p)), None)
            out[layer] = str(mapped) if mapped is not None else stage_of(layer)
        elif rule == RESOLUTION and sizes is not None and sizes.get(layer):
            out[layer] = resolution_name(sizes[layer])
        else:
            out[layer] = stage_of(layer, rule if isinstance(rule, int) else None)
    return out


def check_space(space: str) -> str:
    """``space`` normalised, or an error listing the spaces."""
    name = str(space).strip().lower()
    if name not in SPACES:
        raise ConfigError(f"search: space must be one of {SPACES}, got {space!r}")
    return name
