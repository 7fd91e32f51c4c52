"""The package's layout: no import cycles between the modules of `sparring`.

The graph is read from the source with `ast`, without importing anything: an edge for every
import that runs when a module is loaded (module and class bodies, ``try``/``if`` blocks
included), relative imports resolved. Imports inside functions are deliberately lazy (heavy
libraries, or a module that would otherwise close a cycle) and do not count, nor do those under
``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs the ``__init__`` of ``a.b``, so that package
counts too, unless the importing module lives inside it (it is then already being imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import sparring

ROOT = Path(sparring.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Every module under sparring/ by its dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("sparring", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _load_time_imports(body: list[ast.stmt]):
    """The import statements of ``body`` that run when the module is loaded."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # lazy
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _load_time_imports(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from _load_time_imports(node.body)
        else:  # if, try, with, for, match: their blocks run too
            for field in ("body", "orelse", "finalbody"):
                yield from _load_time_imports(getattr(node, field, None) or [])
            for block in [*(getattr(node, "handlers", None) or []), *(getattr(node, "cases", None) or [])]:
                yield from _load_time_imports(block.body)


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The modules of `sparring` that import statement ``node`` in module ``name`` loads."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        named = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]
    targets = set()
    for target in named:
        while target and target not in modules:  # `import sparring.x.attr`-like names: the module part
            target = target.rpartition(".")[0]
        if not target:
            continue
        targets.add(target)
        parent = target.rpartition(".")[0]
        while parent:  # the packages above it run their __init__ first, unless `name` is inside them
            if not (name == parent or name.startswith(parent + ".")):
                targets.add(parent)
            parent = parent.rpartition(".")[0]
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of `sparring` it imports at load time."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = set()
        for node in _load_time_imports(tree.body):
            graph[name] |= _targets(name, path, node, modules)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "sparring.data" in graph and "sparring.trainer._selfplay" in graph
    assert "sparring.data._rows" in graph["sparring.data._data"]  # a relative import, resolved
    assert "sparring.protocols" in graph["sparring.data._data"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
