"""prunekit's subpackages form layers: a package imports only packages of lower layers, never one
of its own layer or above, not even lazily inside a function or under ``TYPE_CHECKING``; and no
two modules import each other, directly or round a longer loop.

The import graph is read from the source with :mod:`ast` (nothing is imported), so the test is
fast and names the file and line of every offending import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import prunekit

ROOT = Path(prunekit.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "errors", "compat"),
    ("registry", "validation"),
    ("formats",),
    ("core", "adapters"),
    ("ops", "models", "data", "train"),
    ("graph", "norms"),
    ("granularity", "masks"),
    ("measure", "io"),
    ("estimators",),
    ("surgery",),
    ("budget",),
    ("sparse",),
    ("export",),
    ("config",),
    ("result",),
    ("pruning",),
    ("api",),
    ("recovery",),
    ("schedules",),
    ("methods",),
    ("analysis", "llm", "callbacks"),
    ("distributed",),
    ("report",),
    ("sources",),
    ("persist",),
    ("recipe",),
    ("search",),
    ("pipeline",),
    ("__init__",),
    ("cli",),
)
"""Lowest first. ``"__init__"`` is the ``prunekit`` package itself (its public facade); the
others are subpackages or top-level modules of ``prunekit``."""

LAYER_OF: dict[str, int] = {name: i for i, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Edge:
    """``source`` (a module) imports ``target`` (a module) at ``where`` (``path:line``)."""

    source: str
    target: str
    where: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top_part(module: str) -> str:
    """The layered unit a module belongs to: ``prunekit.graph.tracer`` -> ``graph``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool) -> list[str]:
    """Module names an import statement loads (``from a import b`` loads ``a.b`` if it is a
    module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = source.split(".") if is_package else source.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    return [f"{module}.{alias.name}" for alias in node.names] + [module]


def import_edges() -> Iterator[Edge]:
    """Every import of a prunekit module by a prunekit module, at any depth of the file."""
    known = modules()
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            candidates = _targets(node, source, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):
                # "from a import b": the submodule a.b if there is one, else the module a
                sub = [c for c in candidates[:-1] if c in known]
                candidates = sub or candidates[-1:]
            where = f"{path.relative_to(ROOT.parent)}:{node.lineno}"
            for target in candidates:
                if target == "prunekit" or target.startswith("prunekit."):
                    yield Edge(source, target, where)


EDGES = list(import_edges())


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_find_cycles_on_a_hand_made_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert find_cycles(graph) == [["a", "b", "c"]]


def test_relative_and_from_imports_resolve_to_modules() -> None:
    tree = ast.parse("from .tracer import trace\nfrom .. import errors\nimport prunekit.core")
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert _targets(nodes[0], "prunekit.graph.build", False)[-1] == "prunekit.graph.tracer"
    assert _targets(nodes[1], "prunekit.graph", True)[0] == "prunekit.errors"
    assert _targets(nodes[2], "prunekit.x", False) == ["prunekit.core"]


def test_the_graph_sees_function_level_imports() -> None:
    lazy = [e for e in EDGES if e.source == "prunekit.config"]  # imports inside validators
    assert any(e.target.startswith("prunekit.granularity") for e in lazy)


def test_every_package_has_a_layer() -> None:
    missing = sorted({top_part(m) for m in modules()} - set(LAYER_OF))
    assert not missing, f"add these to LAYERS in tests/test_layering.py: {missing}"


def test_no_import_reaches_up_or_sideways() -> None:
    bad = []
    for edge in EDGES:
        a, b = top_part(edge.source), top_part(edge.target)
        if a != b and a in LAYER_OF and b in LAYER_OF and LAYER_OF[b] >= LAYER_OF[a]:
            side = "its own layer" if LAYER_OF[b] == LAYER_OF[a] else "a higher layer"
            bad.append(f"{edge.where}: {a} imports {edge.target} ({b}, {side})")
    assert not bad, "\n".join(bad)


def test_no_package_level_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        a, b = top_part(edge.source), top_part(edge.target)
        if a != b:
            graph.setdefault(a, set()).add(b)
    assert find_cycles(graph) == []


@pytest.mark.parametrize("package", sorted({top_part(m) for m in modules()}))
def test_no_module_level_cycle(package: str) -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        if edge.target in known and top_part(edge.source) == top_part(edge.target) == package:
            graph.setdefault(edge.source, set()).add(edge.target)
    assert find_cycles(graph) == []
