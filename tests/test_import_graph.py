"""The package's import graph has no circle (module-level imports, read from the source).

Imports inside functions and under ``if TYPE_CHECKING:`` do not count: they run after
every module is loaded. The graph is read from the installed package, so a wheel that
left a subpackage out fails here too (``test_imports`` then imports each module).
"""

import ast
import importlib.util
import pathlib

import oxjob

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "import_graph.py"
_spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
graph_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph_tool)

PACKAGE = pathlib.Path(oxjob.__file__).parent


def test_the_package_has_no_import_circle():
    graph = graph_tool.import_graph(PACKAGE)
    assert "oxjob.backends" in graph and "oxjob._backends.base" in graph
    assert graph_tool.circles(graph) == []
    assert graph_tool.back_edges(graph) == []


def _package(tmp_path, files):
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_graph_finds_circles_through_subpackages_and_relative_imports(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "from . import a\n",
            "a.py": "from ._sub.b import thing\n",
            "_sub/__init__.py": "",
            "_sub/b.py": "from .. import a\nthing = 1\n",
            "c.py": "import pkg._sub\n",
        },
    )
    graph = graph_tool.import_graph(root)
    assert graph["pkg.a"] == {"pkg._sub", "pkg._sub.b"}
    assert graph["pkg.c"] == {"pkg._sub"}
    assert graph_tool.circles(graph) == [["pkg._sub.b", "pkg.a"]]
    assert graph_tool.back_edges(graph) == [("pkg._sub.b", "pkg.a")]


def test_deferred_imports_are_not_arrows(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import pkg.b\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from . import a\n"
                "def f():\n    from . import a\n"
                "try:\n    from . import c\nexcept ImportError:\n    pass\n"
            ),
            "c.py": "",
        },
    )
    graph = graph_tool.import_graph(root)
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph_tool.circles(graph) == []
    assert graph_tool.floors(graph) == 3


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def _last_name(node):
    """``call`` for ``call``, ``self._call`` and ``task.call``; None for other nodes."""
    if isinstance(node, ast.Name):
        return node.id.lstrip("_")
    if isinstance(node, ast.Attribute):
        return node.attr.lstrip("_")
    return None


def test_nothing_reaches_into_the_engine_or_its_calls_and_tasks():
    # The engine's API is TaskEngine's and Call's public methods (docs/engine.md):
    # no module reads or calls a private member of an engine, a call or a task it
    # was handed (``Call`` used to forward to ``engine._submit``, the engine read
    # ``call._carried``...). ``self._x`` inside a class is its own business.
    reaches = [
        f"{name}:{node.lineno}: {ast.unparse(node)}"
        for name, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and _last_name(node.value) in ("engine", "call", "task")
    ]
    assert reaches == []


def test_no_module_finds_another_through_sys_modules():
    # The owner of a piece of state sits below its readers (docs/architecture.md):
    # ``sys.modules["oxjob.parallel"]`` was how the backends reached the default
    # backend above them.
    lookups = [
        f"{name}:{node.lineno}: {ast.unparse(node)}"
        for name, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, (ast.Call, ast.Subscript))
        and "sys.modules" in ast.unparse(node.func if isinstance(node, ast.Call) else node.value)
        and "'oxjob" in ast.unparse(node)
    ]
    assert lookups == []
