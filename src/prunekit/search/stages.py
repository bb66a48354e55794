"""Search dimensions: one keep ratio per layer (``space="group"``) or per stage (``"stage"``).

A deep network has dozens of prunable layers, and a sampler such as TPE or CMA-ES needs many
trials per dimension. Layers of one stage (a ResNet's ``layer2``, a VGG's ``stage3``) see
feature maps of one size and usually tolerate similar sparsities, so searching one keep ratio
per stage, shared by its layers, cuts the dimensions to a handful (the per-stage width
multipliers of AutoSlim / FastNAS-style searches). A layer's stage is, in order of precedence:

1. the stage of the first pattern of ``stages`` (glob -> stage name) its name matches;
2. with ``depth=d``, the first ``d`` components of its name (``layer2.1.conv1`` -> ``layer2`` for
   ``d=1``);
3. by default, its parent module's name without trailing block indices
   (``layer2.1.conv1`` -> ``layer2``, ``features.stage3.conv1`` -> ``features.stage3``); a
   top-level layer (``conv1``, ``fc``) is a stage of its own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prunekit.errors import ConfigError

SPACES: tuple[str, ...] = ("group", "stage")
"""Search spaces: one dimension per prunable layer, or per stage."""


@dataclass(frozen=True)
class Param:
    """One searched keep ratio (``[low, 1]``) and the layers' override patterns it sets."""

    name: str
    low: float
    patterns: tuple[str, ...]


def stage_of(layer: str, depth: int | None = None) -> str:
    """The stage of ``layer`` by its name (rules 2 and 3 of the module docs)."""
    parts = layer.split(".")
    if depth is not None:
        return ".".join(parts[:depth])
    parent = parts[:-1]
    while parent and parent[-1].isdigit():
        parent.pop()
    return ".".join(parent) or layer


def assign_stages(
    layers: Sequence[str],
    *,
    depth: int | None = None,
    stages: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Layer name -> stage name for each of ``layers`` (see the module docs)."""
    if depth is not None and (isinstance(depth, bool) or depth < 1):
        raise ConfigError(f"search: stage_depth must be an integer >= 1, got {depth!r}")
    out = {}
    for layer in layers:
        mapped = next((s for p, s in (stages or {}).items() if fnmatch.fnmatchcase(layer, p)), None)
        out[layer] = str(mapped) if mapped is not None else stage_of(layer, depth)
    return out


def check_space(space: str) -> str:
    """``space`` normalised, or an error listing the spaces."""
    name = str(space).strip().lower()
    if name not in SPACES:
        raise ConfigError(f"search: space must be one of {SPACES}, got {space!r}")
    return name
