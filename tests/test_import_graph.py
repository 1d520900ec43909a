"""No import cycles in src/hubbub: every ``import`` counts, module-level or inside a function.

An import inside a function hides a cycle from Python (the module is complete by the time the
function runs) but not from a reader: the two modules still need each other. Only imports under
``if TYPE_CHECKING:`` are left out, since they never run. Run this file as a script to print the
graph's cycles: ``.venv/bin/python tests/test_import_graph.py``.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "hubbub"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of a module but those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    """Module -> the hubbub modules it imports (a package import counts as its ``__init__``, and
    importing a submodule counts as importing the packages above it)."""
    files = {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path.name == "__init__.py", node)
                # `from pkg import mod` imports the submodule when there is one.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            for imported in targets:
                target = imported
                while target and target not in files:  # a.b.func -> a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                # Importing a.b.c first runs the __init__ of a and a.b: an edge to each, except
                # to the packages the importer itself lives in (those are already running).
                parent = target.rpartition(".")[0]
                while parent:
                    if parent in files and not name.startswith(parent + "."):
                        graph[name].add(parent)
                    parent = parent.rpartition(".")[0]
    return graph


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): the modules of
    each import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative: the graph is deep enough to make recursion depth a worry on small stacks.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return components


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module of each component, without repeats."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for component in components(graph):
        for start in component:
            cycle = _a_cycle(graph, component, start)
            key = frozenset(itertools.pairwise(cycle))
            if key not in seen:
                seen.add(key)
                found.append(cycle)
    return found


def _a_cycle(graph: dict[str, set[str]], component: list[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` inside its component (breadth-first search)."""
    members = set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    return component  # unreachable for a strongly connected component


def describe(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in found)


def test_no_import_cycles() -> None:
    found = components(import_graph())
    assert not found, "import cycles in src/hubbub:\n" + describe(cycles(import_graph()))


def test_the_check_finds_a_cycle_hidden_in_a_function() -> None:
    # The checker itself: an import inside a function closes a cycle; a TYPE_CHECKING one doesn't.
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert cycles(graph) == [["a", "b", "a"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import hubbub.x\n"
        "def f():\n    import hubbub.y\n"
    )
    assert [n.names[0].name for n in _imports(tree) if isinstance(n, ast.Import)] == ["hubbub.y"]


if __name__ == "__main__":
    found = cycles(import_graph())
    print(describe(found) or "no cycles")
    sys.exit(1 if found else 0)
