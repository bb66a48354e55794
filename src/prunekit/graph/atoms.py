"""Atoms, slots and the coupling graph that structural tracing builds.

Every position of every dimension (of size > 1) of every floating parameter and buffer is an
*atom*: an integer id. Atom ``0`` is special: it stands for a position that can never be removed
(a model input, a model output, a kernel tap, a dimension that an op cannot shrink).

While the model runs, every activation carries *slots*: integer tensors of atom ids, one atom per
element, broadcastable to the activation's shape (a dimension along which a slot does not vary has
size 1). A convolution output ``[N, C, H, W]`` has one slot of shape ``[1, C, 1, 1]`` holding the
atoms of the weight's output dimension; after ``flatten`` it is ``[1, C*H*W]`` with each atom
repeated ``H*W`` times. Shape ops are applied to the slots themselves, so the index mapping through
reshape, concat, split, permute and channel shuffle is exact by construction.

Op rules *couple* slots: two atoms that must be removed together get an edge. Connected components
of the edge graph are the prunable units; a component that reaches atom ``0`` cannot be removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

FIXED = 0
"""The atom of positions that can never be removed."""

Slots = tuple[Tensor, ...]
"""The slots of one tensor: int64 atom tensors broadcastable to its shape."""


def vary(slot: Tensor) -> frozenset[int]:
    """The dimensions along which ``slot`` varies (those of size > 1)."""
    return frozenset(d for d, n in enumerate(slot.shape) if n > 1)


def compress(slot: Tensor) -> Tensor | None:
    """Shrink every dimension along which ``slot`` is constant to size 1; ``None`` if constant."""
    for d in range(slot.dim()):
        if slot.shape[d] > 1 and bool((slot == slot.narrow(d, 0, 1)).all()):
            slot = slot.narrow(d, 0, 1)
    return None if slot.numel() == 1 else slot.contiguous()


def compress_all(slots: Sequence[Tensor]) -> Slots:
    kept = (compress(s) for s in slots)
    return tuple(s for s in kept if s is not None)


def left_pad(slot: Tensor, ndim: int) -> Tensor:
    """Broadcast alignment: prepend size-1 dimensions up to ``ndim``."""
    return slot.reshape((1,) * (ndim - slot.dim()) + tuple(slot.shape))


@dataclass
class AtomGraph:
    """The atoms allocated so far and the couplings between them."""

    n_atoms: int = 1
    edges: list[Tensor] = field(default_factory=list)
    inexact: list[Tensor] = field(default_factory=list)
    normalised: list[Tensor] = field(default_factory=list)
    standardised: list[Tensor] = field(default_factory=list)

    def allocate(self, n: int) -> range:
        start = self.n_atoms
        self.n_atoms += n
        return range(start, start + n)

    def union(self, a: Tensor, b: Tensor) -> None:
        """Couple ``a`` and ``b`` element by element (after broadcasting)."""
        if a.shape != b.shape:
            a, b = torch.broadcast_tensors(a, b)
        a, b = a.reshape(-1), b.reshape(-1)
        if a.numel() > 4096:
            # drop duplicate pairs (broadcasting repeats them) via one int64 key per pair
            key = torch.unique((a << 32) | b)
            a, b = key >> 32, key & 0xFFFFFFFF
        if a.numel():
            self.edges.append(torch.stack([a, b]))

    def fix(self, atoms: Tensor) -> None:
        """Mark ``atoms`` as never removable."""
        self.union(atoms.reshape(-1).unique(), torch.zeros((), dtype=torch.int64))

    def keep_size(self, slot: Tensor, dim: int) -> None:
        """The size of ``dim`` is written in code (a slice bound, a constant operand), so no unit
        may remove part of it. A slot that varies along ``dim`` alone is fixed; one that also
        varies along other dims (heads and positions in a head) has every fibre along ``dim``
        coupled into one unit, so removing a unit removes whole fibres and ``dim`` keeps its
        size (a whole attention head can go, a position inside every head cannot)."""
        dim = dim % max(slot.dim(), 1)
        if slot.dim() == 0 or slot.shape[dim] <= 1:
            return
        if vary(slot) == {dim}:
            self.fix(slot)
        else:
            self.union(slot.narrow(dim, 0, 1), slot)

    def mark_inexact(self, atoms: Tensor) -> None:
        """Removing these atoms changes a normalisation over their dimension: zeroing them is
        not equivalent to removing them, so their groups cannot be verified by masking. The
        slot itself (positions in order) is kept in ``normalised`` for the kept-units reference
        (:mod:`prunekit.graph.norms`)."""
        self.inexact.append(atoms.reshape(-1).unique())
        self.normalised.append(atoms)

    def mark_standardised(self, atoms: Tensor) -> None:
        """These atoms index positions of a tensor normalised over them with its own statistics
        (weight standardisation: each output channel's weights over its inputs): inexact, and
        the layer that reads the normalised tensor records where
        (:meth:`standardised_among`)."""
        flat = atoms.reshape(-1).unique()
        self.inexact.append(flat)
        self.standardised.append(flat)

    def standardised_among(self, atoms: Tensor) -> bool:
        """True if any of ``atoms`` was marked by :meth:`mark_standardised`."""
        return any(bool(torch.isin(atoms, s).any()) for s in self.standardised)

    def edge_array(self) -> np.ndarray:
        if not self.edges:
            return np.zeros((2, 0), dtype=np.int64)
        return torch.cat(self.edges, dim=1).numpy()


def components(n_atoms: int, edges: np.ndarray) -> np.ndarray:
    """Connected component of every atom."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ones = np.ones(edges.shape[1], dtype=np.int8)
    adjacency = coo_matrix((ones, (edges[0], edges[1])), shape=(n_atoms, n_atoms))
    _, labels = connected_components(adjacency, directed=False)
    return np.asarray(labels)
