"""The granularities: element, N:M, block (weight tiles), channel (neuron / filter) and layer
(whole residual blocks)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from prunekit.core.groups import Group, Member
from prunekit.core.views import AxisView, BlockView, ElementView
from prunekit.errors import ConfigError, UnsupportedLayerError
from prunekit.granularity.base import Granularity
from prunekit.ops.rules import LayerRule
from prunekit.registry import Registry


def _qualified(layer: str, attr: str) -> str:
    return f"{layer}.{attr}" if layer else attr


def _weight_name(layer: str, rule: LayerRule) -> str:
    return _qualified(layer, rule.weight)


def _weight_shape(module: nn.Module, rule: LayerRule) -> tuple[int, ...]:
    return tuple(getattr(module, rule.weight).shape)


@dataclass(frozen=True)
class Element(Granularity):
    """Unstructured: every weight is a unit."""

    name: ClassVar[str] = "element"
    unit: ClassVar[str] = "weight"

    def group(self, layer: str, module: nn.Module, rule: LayerRule) -> Group:
        view = ElementView(_weight_shape(module, rule), rule.out_dim, rule.in_dim)
        return Group(layer, layer, (Member(_weight_name(layer, rule), view),))


@dataclass(frozen=True)
class NM(Granularity):
    """N:M semi-structured sparsity: in every ``m`` consecutive weights along the input dimension,
    exactly ``n`` are kept (2:4 is the pattern of NVIDIA Ampere sparse tensor cores;
    Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks")."""

    name: ClassVar[str] = "nm"
    unit: ClassVar[str] = "slot"
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.n < self.m:
            raise ConfigError(
                f"N:M pattern needs 0 < N < M (N kept of every M), got {self.n}:{self.m}"
            )

    @property
    def pattern(self) -> tuple[int, int]:
        return (self.n, self.m)

    def spec(self) -> str:
        return f"{self.n}:{self.m}"

    def group(self, layer: str, module: nn.Module, rule: LayerRule) -> Group:
        shape = _weight_shape(module, rule)
        if shape[rule.in_dim] % self.m:
            raise ConfigError(
                f"layer {layer!r}: input dimension {rule.in_dim} of its weight {shape} has size "
                f"{shape[rule.in_dim]}, not divisible by M={self.m} of the {self.spec()} pattern; "
                f"exclude the layer (e.g. exclude=[{layer!r}])"
            )
        view = ElementView(shape, rule.out_dim, rule.in_dim)
        member = Member(_weight_name(layer, rule), view)
        return Group(layer, layer, (member,), pattern=self.pattern)


@dataclass(frozen=True)
class Block(Granularity):
    """Rectangular ``rows x cols`` tiles of the weight matrix ``[out, in]`` (for convolutions,
    ``[out, kernel * in]`` with input channels innermost). Edge tiles may be smaller."""

    name: ClassVar[str] = "block"
    unit: ClassVar[str] = "tile"
    rows: int = 1
    cols: int = 4

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ConfigError(f"block size must be positive, got {self.rows}x{self.cols}")

    def spec(self) -> str:
        return f"block:{self.rows}x{self.cols}"

    def group(self, layer: str, module: nn.Module, rule: LayerRule) -> Group:
        shape = _weight_shape(module, rule)
        view = BlockView(shape, (self.rows, self.cols), rule.out_dim, rule.in_dim)
        return Group(layer, layer, (Member(_weight_name(layer, rule), view),))


@dataclass(frozen=True)
class Channel(Granularity):
    """Output units of a layer: neurons of a Linear (weight rows), filters of a convolution.
    A unit covers its weight slice and its bias entry; its activation is the layer's output
    channel."""

    name: ClassVar[str] = "channel"
    unit: ClassVar[str] = "channel"
    structural: ClassVar[bool] = True

    def group(self, layer: str, module: nn.Module, rule: LayerRule) -> Group:
        if rule.out_units_tied(module):
            raise UnsupportedLayerError(
                f"layer {layer!r} ({type(module).__name__} with groups > 1): its output channels "
                "do not lie along one weight dimension; exclude it for channel granularity"
            )
        shape = _weight_shape(module, rule)
        members = [Member(_weight_name(layer, rule), AxisView(shape, rule.out_dim))]
        for param in rule.out_params:
            value = getattr(module, param, None)
            if value is not None:
                members.append(Member(_qualified(layer, param), AxisView(tuple(value.shape), 0)))
        return Group(layer, layer, tuple(members), output=(layer, rule.output_dim))


@dataclass(frozen=True)
class Layer(Granularity):
    """Whole residual blocks (depth pruning): a unit is one block, found by tracing
    (:func:`prunekit.graph.find_residual_blocks`), scored by a block estimator and removed by
    surgery, which replaces it by the identity (Men et al. 2024, "ShortGPT"; Gromov et al. 2024,
    "The Unreasonable Ineffectiveness of the Deeper Layers"). ``"block"`` names weight tiles."""

    name: ClassVar[str] = "layer"
    unit: ClassVar[str] = "block"
    structural: ClassVar[bool] = True
    maskable: ClassVar[bool] = False
    needs_surgery: ClassVar[bool] = True

    def group(self, layer: str, module: nn.Module, rule: LayerRule) -> Group:
        raise ConfigError(
            f"granularity 'layer' groups whole residual blocks, not layer {layer!r} alone: "
            "use prunekit.prune(..., granularity='layer') or prunekit.surgery.prune_layers"
        )


GRANULARITIES: Registry[type[Granularity]] = Registry("granularity")
GRANULARITIES.register("element", Element, aliases=("unstructured", "weight"))
GRANULARITIES.register("nm", NM, aliases=("n:m",))
GRANULARITIES.register("block", Block)
GRANULARITIES.register("channel", Channel, aliases=("neuron", "filter", "row"))
GRANULARITIES.register("layer", Layer)

_NM = re.compile(r"^(?:nm:)?(\d+):(\d+)$")
_BLOCK = re.compile(r"^block(?::(\d+)x(\d+))?$")


def get_granularity(spec: str | Granularity) -> Granularity:
    """Parse a granularity spec: ``"element"``, ``"channel"`` (or ``"neuron"``, ``"filter"``),
    ``"2:4"`` (or ``"nm:2:4"``), ``"block:4x4"``, ``"layer"``. Instances pass through unchanged."""
    if isinstance(spec, Granularity):
        return spec
    text = spec.strip().lower()
    if nm := _NM.match(text):
        return NM(int(nm.group(1)), int(nm.group(2)))
    if block := _BLOCK.match(text):
        return Block(int(block.group(1)), int(block.group(2))) if block.group(1) else Block()
    if text == "nm":
        return NM()
    return GRANULARITIES.get(text)()
