"""What a structural trace produces: the atom families of the model's tensors, the units an op rule
kept whole, and the coupling graph (:class:`StructureTrace`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from prunekit.graph.atoms import AtomGraph
from prunekit.graph.norms import NormSite

Compute = Literal["meta", "fake", "real"]
"""How the traced forward runs: on ``meta`` tensors (shapes only, the default), under a
``FakeTensorMode`` (shapes only, slower, more ops supported) or for real."""


@dataclass(frozen=True)
class Family:
    """The atoms of one dimension of one tensor (parameter or buffer)."""

    tensor: str
    dim: int
    start: int
    shape: tuple[int, ...]
    is_param: bool
    aliases: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return self.shape[self.dim]


@dataclass(frozen=True)
class KeptWhole:
    """Units an op rule kept whole instead of mapping them: the op, its module path, why."""

    op: str
    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.op} in {self.where}: {self.why}"


@dataclass
class StructureTrace:
    """The result of a trace: atoms, couplings and the tensors they belong to."""

    graph: AtomGraph
    families: list[Family]
    first_use: dict[str, int]
    n_ops: int = 0
    op_names: set[str] = field(default_factory=set)
    norm_sites: list[NormSite] = field(default_factory=list)
    kept: list[KeptWhole] = field(default_factory=list)
