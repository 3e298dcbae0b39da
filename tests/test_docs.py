"""The documentation site: every public name has a docstring, the API reference page
names them all, README links are rewritten for the site, and `mkdocs build --strict`
succeeds (so a broken link or reference fails the tests)."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import griffe
import pytest

import longpoll
from docs.hooks import rewrite_links

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "api.md"

# Modules whose `__all__` is their public API.
EXPORTING = [
    "longpoll",
    "longpoll.client",
    "longpoll.access",
    "longpoll.addons",
    "longpoll.backends",
    "longpoll.types",
]
# Modules without `__all__`: their public names are the classes and functions they
# define whose names do not start with "_".
DEFINING = [
    "longpoll.server",
    "longpoll.tokens",
    "longpoll.limits",
    "longpoll.metrics",
    "longpoll.backends.redis",
]
# What the reference page shows of the modules without `__all__` (besides their
# module docstring): the names their users import.
REFERENCED = {
    "longpoll.server": ["ServerLimits", "serve", "running", "bind_socket"],
    "longpoll.tokens": [
        "issue",
        "TokenVerifier",
        "Grant",
        "TokenError",
        "check_secret",
        "MIN_SECRET_BYTES",
    ],
    "longpoll.limits": ["ClientLimits", "ClientCounts"],
    "longpoll.metrics": ["Metrics", "multiprocess", "LATENCY_BUCKETS", "FLUSH_SECONDS"],
    "longpoll.backends.redis": ["RedisBackend"],
}
# `__version__` is a plain string, which has no docstring of its own: the reference
# page describes it in its text instead (checked below).
NO_DOCSTRING = {("longpoll", "__version__")}


def public_names() -> Iterator[tuple[str, str]]:
    """(module, name) for every public name of the documented modules."""
    for module_name in EXPORTING:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            yield module_name, name
    for module_name in DEFINING:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                not name.startswith("_")
                and (inspect.isclass(value) or inspect.isfunction(value))
                and value.__module__ == module_name
            ):
                yield module_name, name
        for name in REFERENCED[module_name]:
            yield module_name, name


def own_docstring(module_name: str, name: str) -> str:
    """The docstring `name` has of its own: a class's, not inherited nor generated."""
    value = getattr(importlib.import_module(module_name), name)
    if inspect.isclass(value):
        doc = value.__dict__.get("__doc__") or ""
        # dataclasses and named tuples make up "Name(field, ...)" when there is none
        return "" if doc.startswith(f"{value.__name__}(") else doc
    if inspect.isfunction(value) or inspect.ismethod(value):
        return value.__doc__ or ""
    # A type alias or constant cannot carry __doc__: its docstring is the string
    # after its assignment in the source, which is what the reference page shows.
    found = _source_tree()[f"{module_name}.{name}".removeprefix("longpoll.")]
    return found.docstring.value if found.docstring is not None else ""


@functools.cache
def _source_tree() -> griffe.Object | griffe.Alias:
    """The package as griffe reads it from the source, as the reference page does."""
    return griffe.load("longpoll", search_paths=[str(ROOT / "src")])


def _directives() -> list[str]:
    """The objects the reference page documents, as `::: path` names them."""
    return re.findall(r"^::: (\S+)$", API_PAGE.read_text(), re.MULTILINE)


def _resolve(path: str) -> object:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise AssertionError(f"{path} names no module")


@pytest.mark.parametrize(
    ("module_name", "name"),
    sorted(set(public_names()) - NO_DOCSTRING),
    ids=lambda value: str(value),
)
def test_public_name_has_docstring(module_name: str, name: str) -> None:
    assert own_docstring(module_name, name).strip(), f"{module_name}.{name} has no docstring"


@pytest.mark.parametrize("module_name", EXPORTING + DEFINING)
def test_module_has_docstring(module_name: str) -> None:
    module: ModuleType = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no docstring"


def test_reference_names_all_of_longpoll() -> None:
    directives = set(_directives())
    text = API_PAGE.read_text()
    missing = [
        name
        for name in longpoll.__all__
        if f"longpoll.{name}" not in directives and (("longpoll", name) not in NO_DOCSTRING)
    ]
    assert not missing, f"docs/api.md has no `::: longpoll.NAME` for {missing}"
    for module_name, name in NO_DOCSTRING:
        assert f"`{module_name}.{name}`" in text, f"docs/api.md does not describe {name}"


def test_reference_shows_the_modules_public_names() -> None:
    directives = _directives()
    documented = [_resolve(path) for path in directives]
    wanted = [
        (module_name, name)
        for module_name in EXPORTING[1:]
        for name in importlib.import_module(module_name).__all__
    ] + [(module_name, name) for module_name, names in REFERENCED.items() for name in names]
    missing = [
        f"{module_name}.{name}"
        for module_name, name in wanted
        if not any(
            getattr(importlib.import_module(module_name), name) is found for found in documented
        )
    ]
    assert not missing, f"docs/api.md documents none of {missing}"
    for module_name in EXPORTING[1:] + DEFINING[:-1]:
        assert module_name in directives, f"docs/api.md lacks the docstring of {module_name}"


def test_readme_links_rewritten_for_the_site() -> None:
    readme = (
        "See [security](docs/security.md#tokens), [the bench](bench/README.md), "
        "[examples/](examples/) and [golongpoll](https://example.org/x.md).\n"
        "`[not](docs/a link.md)` and\n```\n[code](docs/x.md)\n```\n"
        "![plot](docs/benchmarks/plot.png)\n[ref]: docs/operations.md\n"
    )
    assert rewrite_links(readme, "index.md") == (
        "See [security](security.md#tokens), the bench (`bench/README.md` in the "
        "repository), `examples/` and [golongpoll](https://example.org/x.md).\n"
        "`[not](docs/a link.md)` and\n```\n[code](docs/x.md)\n```\n"
        "![plot](benchmarks/plot.png)\n[ref]: operations.md\n"
    )
    page = "[home](../README.md#guarantees), [ops](operations.md), [cli](../src/longpoll/cli.py)"
    assert rewrite_links(page, "security.md") == (
        "[home](index.md#guarantees), [ops](operations.md), "
        "cli (`src/longpoll/cli.py` in the repository)"
    )
    assert rewrite_links("[up](../security.md)", "sub/page.md") == "[up](../security.md)"


@pytest.mark.timeout(120)
def test_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr[-5000:]
    home = (site / "index.html").read_text()
    assert "Two commands on a fresh machine" in home  # README.md is the home page
    assert 'href="security/' in home
    assert "docs/security.md" not in re.findall(r'href="([^"]*)"', home)
    api = (site / "api" / "index.html").read_text()
    for name in longpoll.__all__:
        if ("longpoll", name) not in NO_DOCSTRING:
            assert f'id="longpoll.{name}"' in api, name
