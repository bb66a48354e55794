"""What a model family adapter declares: how to recognise its modules, and the facts about them
that tracing, surgery and language-model pruning need (head counts, config fields, block lists).

Modules are recognised by class name (and, where a name is generic, by the Python package the
class comes from), so prunekit imports neither transformers nor timm to know them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

Widths = Callable[[Any], dict[str, int]]
"""Reads a module (after its tensors were sliced) and returns attribute or field values."""


def no_widths(module: Any) -> dict[str, int]:
    """For classes with nothing to report."""
    return {}


def heads(width: int, head_dim: int) -> int:
    """Whole heads of size ``head_dim`` in ``width`` (0 for a degenerate head size)."""
    return width // head_dim if head_dim > 0 else 0


@dataclass(frozen=True)
class ModuleFacts:
    """One group of module classes of a family.

    Attributes:
        classes: class names (``type(module).__name__``).
        package: if set, the class must come from this top-level Python package (``"timm"``
            for its generic ``Attention``).
        attention: True for attention modules.
        widths: the module's own width attributes, re-derived from its sliced tensors (head
            counts, fused split sizes, ``nx`` / ``nf``); surgery sets them.
        config: model ``config`` fields this module implies (``num_attention_heads``, ...).
    """

    classes: tuple[str, ...]
    package: str = ""
    attention: bool = False
    widths: Widths = no_widths
    config: Widths = no_widths

    def matches(self, module: nn.Module) -> bool:
        cls = type(module)
        if cls.__name__ not in self.classes:
            return False
        return not self.package or cls.__module__.split(".")[0] == self.package


@dataclass(frozen=True)
class FixedWidth:
    """An attention class (``module.qualname``) that reshapes its output back to its input's
    width, so the named tensors' dim 0 (its q/k/v rows) cannot shrink."""

    qualname: str
    tensors: tuple[str, ...]


@dataclass(frozen=True)
class ModelFamily:
    """A model family adapter: its modules and where its transformer blocks are.

    Attributes:
        name: registry key (``prunekit list`` shows it).
        summary: one line for ``prunekit list``.
        modules: the module classes the rest of prunekit needs facts about.
        block_paths: attribute paths of the transformer block list, tried in order.
        fixed_widths: attention classes whose inner width is written in their code.
    """

    name: str
    summary: str
    modules: tuple[ModuleFacts, ...] = ()
    block_paths: tuple[str, ...] = ()
    fixed_widths: tuple[FixedWidth, ...] = ()

    def facts_for(self, module: nn.Module) -> ModuleFacts | None:
        """The facts about ``module`` if it is one of this family's classes."""
        return next((facts for facts in self.modules if facts.matches(module)), None)

    def attention_classes(self) -> tuple[str, ...]:
        return tuple(c for facts in self.modules if facts.attention for c in facts.classes)
