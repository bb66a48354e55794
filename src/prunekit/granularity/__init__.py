"""Granularities: what a unit is (a weight, an N:M slot, a block, a channel) and how layers split
into groups of units. ``get_granularity("2:4")`` parses a spec; ``build_groups`` applies it.
"""

from prunekit.granularity.base import Granularity, build_groups
from prunekit.granularity.kinds import (
    GRANULARITIES,
    NM,
    Block,
    Channel,
    Element,
    Layer,
    get_granularity,
)

__all__ = [
    "GRANULARITIES",
    "NM",
    "Block",
    "Channel",
    "Element",
    "Granularity",
    "Layer",
    "build_groups",
    "get_granularity",
]
