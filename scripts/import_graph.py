"""Print the import graph figures of the ``oxjob`` package.

Only module-level imports count: imports inside functions and under
``if TYPE_CHECKING:`` are deferred on purpose and cannot form a circle at
import time.  Usage: ``python scripts/import_graph.py [package_dir]``.

Prints the number of modules per folder, then floors (the longest chain of
arrows, +1), arrows (module -> module edges inside the package), back-edges
(arrows closing a circle, found by depth-first search) and circles (strongly
connected components of more than one module, or a module importing itself).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "python" / "oxjob"


def module_names(pkg_dir: Path) -> dict[str, Path]:
    """Map dotted module names to their source files."""
    base = pkg_dir.name
    out = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        rel = path.relative_to(pkg_dir).with_suffix("")
        parts = [base, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _top_level_imports(body: list[ast.stmt]):
    """Yield import nodes run at import time (not in defs, not under TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _top_level_imports(block)
            for handler in node.handlers:
                yield from _top_level_imports(handler.body)
        elif isinstance(node, ast.With):
            yield from _top_level_imports(node.body)


def import_graph(pkg_dir: Path = ROOT) -> dict[str, set[str]]:
    """Return ``{module: {modules it imports at module level}}`` inside the package."""
    mods = module_names(pkg_dir)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _top_level_imports(tree.body):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts)
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                targets = [target]
                # ``from pkg import mod`` imports the submodule too.
                targets += [f"{target}.{alias.name}" for alias in node.names]
            for target in targets:
                # Importing ``a.b.c`` runs ``a`` and ``a.b`` first.
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    if name in mods and name != mod:
                        graph[mod].add(name)
    # A package's parents are run before it: that is Python's doing, not an
    # arrow the author wrote, and a submodule importing its own package's
    # __init__ is normal.  Drop arrows from a module to its own ancestors.
    for mod, deps in graph.items():
        for dep in list(deps):
            if mod.startswith(dep + "."):
                deps.discard(dep)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a circle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def back_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Arrows that point back to a module still being visited (depth-first)."""
    state: dict[str, int] = {}
    out: list[tuple[str, str]] = []

    def visit(v: str) -> None:
        state[v] = 1
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                out.append((v, w))
            elif w not in state:
                visit(w)
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v)
    return out


def floors(graph: dict[str, set[str]]) -> int:
    """Length of the longest import chain once back-edges are dropped, in modules."""
    back = set(back_edges(graph))
    memo: dict[str, int] = {}

    def depth(v: str) -> int:
        if v not in memo:
            memo[v] = 1 + max((depth(w) for w in graph[v] if (v, w) not in back), default=0)
        return memo[v]

    return max((depth(v) for v in graph), default=0)


def main(argv: list[str]) -> int:
    pkg_dir = Path(argv[1]) if len(argv) > 1 else ROOT
    mods = module_names(pkg_dir)
    graph = import_graph(pkg_dir)
    per_folder = Counter(str(p.parent.relative_to(pkg_dir.parent)) for p in mods.values())
    print("modules per folder:")
    for folder, n in sorted(per_folder.items()):
        print(f"  {folder}: {n}")
    print(f"modules: {len(mods)}")
    print(f"floors: {floors(graph)}")
    print(f"arrows: {sum(len(d) for d in graph.values())}")
    backs = back_edges(graph)
    print(f"back-edges: {len(backs)}")
    for a, b in backs:
        print(f"  {a} -> {b}")
    circ = circles(graph)
    print(f"circles: {len(circ)}")
    for comp in circ:
        print("  " + " <-> ".join(comp))
    return 1 if circ else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
