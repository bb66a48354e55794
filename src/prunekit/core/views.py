"""Unit views: how the units of a group lie inside one tensor.

A *unit* is the smallest thing kept or removed at a granularity. A view maps between a tensor of a
given shape and a flat vector with one entry per unit:

* ``reduce(t, how)`` turns element values (e.g. ``|w|`` or ``g * w``) into one value per unit;
* ``expand(v)`` turns one value per unit (e.g. a keep mask) back into the tensor's shape.

Three views cover every granularity: :class:`AxisView` (slices along one dimension: neurons,
channels, heads), :class:`ElementView` (single weights, ordered so that N:M groups are consecutive)
and :class:`BlockView` (rectangular tiles of the weight matrix). Views are frozen and serialisable,
so groups and plans built on them can be written to JSON.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

Reduction = Literal["sum", "mean", "max"]
REDUCTIONS: tuple[Reduction, ...] = ("sum", "mean", "max")


@dataclass(frozen=True)
class MatrixLayout:
    """Reads a weight tensor as a matrix ``[out, in_flat]`` with the input dimension innermost.

    For a ``Linear`` weight ``[out, in]`` this is the identity. For a ``Conv2d`` weight
    ``[out, in, kh, kw]`` the matrix is ``[out, kh * kw * in]``: the layout of an implicit GEMM over
    NHWC data, in which N:M groups run along input channels (as in NVIDIA's 2:4 sparse kernels).
    """

    shape: tuple[int, ...]
    out_dim: int = 0
    in_dim: int = 1

    def _moved_shape(self) -> tuple[int, ...]:
        rest = [s for d, s in enumerate(self.shape) if d not in (self.out_dim, self.in_dim)]
        return (self.shape[self.out_dim], *rest, self.shape[self.in_dim])

    @property
    def rows(self) -> int:
        return self.shape[self.out_dim]

    @property
    def cols(self) -> int:
        return math.prod(self.shape) // max(self.rows, 1)

    def to_matrix(self, t: Tensor) -> Tensor:
        if len(self.shape) == 1:
            return t.reshape(1, -1)
        moved = t.movedim((self.out_dim, self.in_dim), (0, -1))
        return moved.reshape(self.rows, -1)

    def from_matrix(self, m: Tensor) -> Tensor:
        if len(self.shape) == 1:
            return m.reshape(self.shape)
        moved = m.reshape(self._moved_shape())
        return moved.movedim((0, -1), (self.out_dim, self.in_dim))


class UnitView(ABC):
    """How the units of a group lie inside one tensor of shape ``shape``."""

    shape: tuple[int, ...]

    @property
    @abstractmethod
    def n_units(self) -> int:
        """Number of units."""

    @abstractmethod
    def reduce(self, t: Tensor, how: Reduction = "sum") -> Tensor:
        """Reduce element values of shape ``shape`` to a vector of ``n_units`` values."""

    @abstractmethod
    def counts(self) -> Tensor:
        """Number of elements of the tensor in each unit (float vector of ``n_units``)."""

    @abstractmethod
    def expand(self, values: Tensor) -> Tensor:
        """Broadcast one value per unit back to the tensor's shape."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description of this view."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
        return {"kind": type(self).__name__, **data}


def _reduce_rows(m: Tensor, how: Reduction) -> Tensor:
    """Reduce a ``[units, elements]`` matrix along its last dimension."""
    if how == "sum":
        return m.sum(dim=-1)
    if how == "mean":
        return m.mean(dim=-1)
    if how == "max":
        return m.amax(dim=-1)
    raise ValueError(f"unknown reduction {how!r}; choose from {REDUCTIONS}")


@dataclass(frozen=True)
class AxisView(UnitView):
    """Units are slices along ``dim``: unit ``i`` covers positions
    ``offset + i * repeat .. offset + (i + 1) * repeat - 1`` of that dimension.

    ``repeat > 1`` describes a flatten (one channel feeds ``repeat`` features of a Linear);
    ``offset`` describes a concatenation partner. Positions outside the covered range are not units
    of this view and are left untouched by :meth:`expand` (their value is ``fill``).
    """

    shape: tuple[int, ...]
    dim: int = 0
    units: int = -1
    offset: int = 0
    repeat: int = 1
    fill: float = 1.0

    def __post_init__(self) -> None:
        dim = self.dim % len(self.shape)
        object.__setattr__(self, "dim", dim)
        if self.units < 0:
            object.__setattr__(self, "units", (self.shape[dim] - self.offset) // self.repeat)
        end = self.offset + self.units * self.repeat
        if self.units < 0 or end > self.shape[dim]:
            raise ValueError(
                f"AxisView covers positions {self.offset}..{end - 1} of dim {dim}, "
                f"but the tensor has shape {self.shape}"
            )

    @property
    def n_units(self) -> int:
        return self.units

    def _covered(self, t: Tensor) -> Tensor:
        span = t.narrow(self.dim, self.offset, self.units * self.repeat).movedim(self.dim, 0)
        return span.reshape(self.units, -1)

    def reduce(self, t: Tensor, how: Reduction = "sum") -> Tensor:
        if how not in ("sum", "mean", "max"):
            return _reduce_rows(self._covered(t), how)  # raises, naming the choices
        # reduce the other dims in place of moving ``dim`` first: no copy of the tensor
        span = t.narrow(self.dim, self.offset, self.units * self.repeat)
        others = [d for d in range(t.dim()) if d != self.dim]
        if how == "max":
            per_position = span.amax(dim=others) if others else span
            return per_position.reshape(self.units, self.repeat).amax(dim=-1)
        per_position = span.sum(dim=others) if others else span
        sums = per_position.reshape(self.units, self.repeat).sum(dim=-1)
        return (
            sums / (math.prod(self.shape) // self.shape[self.dim] * self.repeat)
            if how == "mean"
            else sums
        )

    def counts(self) -> Tensor:
        per_unit = math.prod(self.shape) // self.shape[self.dim] * self.repeat
        return torch.full((self.units,), float(per_unit))

    def expand(self, values: Tensor) -> Tensor:
        out = torch.full(self.shape, self.fill, dtype=values.dtype, device=values.device)
        span = values.repeat_interleave(self.repeat)
        view_shape = [1] * len(self.shape)
        view_shape[self.dim] = span.numel()
        target = out.narrow(self.dim, self.offset, span.numel())
        target.copy_(span.reshape(view_shape).expand_as(target))
        return out


@dataclass(frozen=True)
class ElementView(UnitView):
    """Every element is a unit. Units are ordered row by row of the :class:`MatrixLayout`, so that
    consecutive units run along the input dimension (what N:M patterns need)."""

    shape: tuple[int, ...]
    out_dim: int = 0
    in_dim: int = 1

    @property
    def layout(self) -> MatrixLayout:
        return MatrixLayout(self.shape, self.out_dim, self.in_dim)

    @property
    def n_units(self) -> int:
        return math.prod(self.shape)

    def reduce(self, t: Tensor, how: Reduction = "sum") -> Tensor:
        return self.layout.to_matrix(t).reshape(-1)

    def counts(self) -> Tensor:
        return torch.ones(self.n_units)

    def expand(self, values: Tensor) -> Tensor:
        layout = self.layout
        return layout.from_matrix(values.reshape(layout.rows, layout.cols))


@dataclass(frozen=True)
class BlockView(UnitView):
    """Units are ``block = (rows, cols)`` tiles of the weight matrix (see :class:`MatrixLayout`).
    Tiles at the right and bottom edges may be smaller when the matrix does not divide evenly."""

    shape: tuple[int, ...]
    block: tuple[int, int] = (1, 4)
    out_dim: int = 0
    in_dim: int = 1

    @property
    def layout(self) -> MatrixLayout:
        return MatrixLayout(self.shape, self.out_dim, self.in_dim)

    @property
    def grid(self) -> tuple[int, int]:
        layout = self.layout
        return (-(-layout.rows // self.block[0]), -(-layout.cols // self.block[1]))

    @property
    def n_units(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def _tiles(self, t: Tensor, pad: float) -> Tensor:
        """``[n_units, bh * bw]`` tiles, padded with ``pad`` at ragged edges."""
        m = self.layout.to_matrix(t)
        (gr, gc), (bh, bw) = self.grid, self.block
        padded = torch.nn.functional.pad(
            m, (0, gc * bw - m.shape[1], 0, gr * bh - m.shape[0]), value=pad
        )
        return padded.reshape(gr, bh, gc, bw).permute(0, 2, 1, 3).reshape(gr * gc, bh * bw)

    def counts(self) -> Tensor:
        ones = torch.ones(self.shape)
        return self._tiles(ones, 0.0).sum(dim=-1)

    def reduce(self, t: Tensor, how: Reduction = "sum") -> Tensor:
        if how == "max":
            return self._tiles(t, float("-inf")).amax(dim=-1)
        sums = self._tiles(t, 0.0).sum(dim=-1)
        return sums / self.counts().to(sums) if how == "mean" else sums

    def expand(self, values: Tensor) -> Tensor:
        layout = self.layout
        (gr, gc), (bh, bw) = self.grid, self.block
        full = values.reshape(gr, gc).repeat_interleave(bh, 0).repeat_interleave(bw, 1)
        return layout.from_matrix(full[: layout.rows, : layout.cols].contiguous())


@dataclass(frozen=True)
class IndexView(UnitView):
    """Units are arbitrary sets of positions along ``dim``: unit ``i`` covers ``index[i]``.

    Structural groups need it where a unit's positions are not one contiguous run: a channel
    shuffle permutes channels, a grouped convolution's unit covers one channel per group, a unit
    may be absent from a tensor (empty tuple). Positions no unit covers are left untouched by
    :meth:`expand` (their value is ``fill``).
    """

    shape: tuple[int, ...]
    dim: int
    index: tuple[tuple[int, ...], ...]
    fill: float = 1.0

    def __post_init__(self) -> None:
        dim = self.dim % len(self.shape)
        object.__setattr__(self, "dim", dim)
        index = tuple(tuple(int(p) for p in unit) for unit in self.index)
        object.__setattr__(self, "index", index)
        flat = [p for unit in index for p in unit]
        if len(set(flat)) != len(flat) or any(not 0 <= p < self.shape[dim] for p in flat):
            raise ValueError(
                f"IndexView positions must be distinct and within dim {dim} of shape {self.shape}"
            )

    @property
    def n_units(self) -> int:
        return len(self.index)

    def _flat(self) -> tuple[Tensor, Tensor]:
        positions = torch.tensor([p for unit in self.index for p in unit], dtype=torch.long)
        owners = torch.tensor(
            [i for i, unit in enumerate(self.index) for _ in unit], dtype=torch.long
        )
        return positions, owners

    def counts(self) -> Tensor:
        per_position = math.prod(self.shape) // self.shape[self.dim]
        return torch.tensor([float(len(u) * per_position) for u in self.index])

    def reduce(self, t: Tensor, how: Reduction = "sum") -> Tensor:
        positions, owners = self._flat()
        rows = t.movedim(self.dim, 0)[positions].reshape(len(positions), -1)
        if how == "max":
            out = torch.full((self.n_units,), float("-inf"), dtype=t.dtype, device=t.device)
            return out.scatter_reduce(0, owners.to(t.device), rows.amax(dim=-1), "amax")
        sums = torch.zeros(self.n_units, dtype=t.dtype, device=t.device)
        sums = sums.index_add(0, owners.to(t.device), rows.sum(dim=-1))
        if how == "mean":
            return sums / self.counts().to(sums).clamp_min(1.0)
        if how != "sum":
            raise ValueError(f"unknown reduction {how!r}; choose from {REDUCTIONS}")
        return sums

    def expand(self, values: Tensor) -> Tensor:
        positions, owners = self._flat()
        along = torch.full(
            (self.shape[self.dim],), self.fill, dtype=values.dtype, device=values.device
        )
        along[positions.to(values.device)] = values[owners.to(values.device)]
        view_shape = [1] * len(self.shape)
        view_shape[self.dim] = self.shape[self.dim]
        return along.reshape(view_shape).expand(self.shape).clone()


VIEW_KINDS: dict[str, type[UnitView]] = {
    cls.__name__: cls for cls in (AxisView, ElementView, BlockView, IndexView)
}


def view_from_dict(data: dict[str, Any]) -> UnitView:
    """Rebuild a view written by :meth:`UnitView.to_dict`."""
    fields = dict(data)
    cls = VIEW_KINDS[fields.pop("kind")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
