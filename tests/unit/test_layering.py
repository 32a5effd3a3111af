"""How the packages of cronswarm may depend on each other (README: Code map).

Imports are read from the source (those under ``if TYPE_CHECKING:`` do not
count: they never run). Between packages there is no cycle, and the edges
below are refused outright."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "cronswarm"

# (importer, imported): master runs no jobs, metrics reads no internals,
# common and the stores know nothing above them.
FORBIDDEN = {
    ("master", "worker"),
    ("metrics", "master"), ("metrics", "worker"),
    ("common", "coord"), ("common", "logstore"), ("common", "worker"), ("common", "master"),
    ("coord", "logstore"), ("logstore", "coord"),
    ("alerts", "master"), ("alerts", "worker"),
}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            skipped.update(id(sub) for sub in ast.walk(node))
    return skipped


def _imported_packages(path: Path) -> set[str]:
    """The top-level cronswarm packages ``path`` imports when it runs."""
    depth = len(path.relative_to(ROOT).parts)  # 1: cronswarm/x.py, 2: cronswarm/pkg/x.py
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("cronswarm."))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("cronswarm."):
                    found.add(node.module.split(".")[1])
            elif node.level == depth:  # relative to cronswarm/ itself
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(a.name for a in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        graph[package] |= _imported_packages(path) - {package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_from_the_source() -> None:
    graph = package_graph()
    assert {"common", "coord", "worker", "master"} <= graph.keys()
    assert "common" in graph["worker"] and "coord" in graph["master"]


def test_the_packages_import_each_other_without_a_cycle() -> None:
    assert find_cycle(package_graph()) is None


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_package_imports_what_it_must_not() -> None:
    graph = package_graph()
    assert [(a, b) for a, b in sorted(FORBIDDEN) if b in graph.get(a, ())] == []


MAX_MODULE_LINES = 400


def test_no_module_is_longer_than_the_limit() -> None:
    # One room per concern: a module past the limit is two concerns or more.
    long = {str(path.relative_to(ROOT)): n for path in ROOT.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"
