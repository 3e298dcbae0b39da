"""No two modules of longpoll import each other, directly or around a loop.

Every import counts: at module level, inside functions and under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import longpoll

SOURCE = Path(longpoll.__file__).resolve().parent.parent

# Known and to be removed: `HttpConnection` is annotated with the server that owns it.
ALLOWED = {("longpoll._protocol", "longpoll.server")}


def module_names() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    names = {}
    for path in (SOURCE / "longpoll").rglob("*.py"):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return (found & modules.keys()) - {name}


def import_graph() -> dict[str, set[str]]:
    """What each module of the package imports of it."""
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def test_no_module_imports_itself_around_a_loop() -> None:
    graph = import_graph()
    assert "longpoll.options" in graph["longpoll.manager"]
    for importer, module in ALLOWED:
        graph[importer].discard(module)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_the_allowed_imports_are_still_there() -> None:
    # Once one is gone, drop it from ALLOWED so that it cannot come back.
    graph = import_graph()
    assert all(module in graph[importer] for importer, module in ALLOWED)
