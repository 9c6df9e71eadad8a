"""The house is one-way (docs/architecture.md, "Layers"): models/ and devices/ know nothing of
pipeline/, devices/ knows nothing of models/, and no file imports itself back through others.

Every import statement of every first-party file counts, those inside functions too, so
a deferred import cannot hide a cycle. (Parent packages that Python imports implicitly are
left out: a package's __init__ naming its own modules is not a cycle.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "devices", "pipeline")
# package -> the packages it may import; everything else is a layering error
ALLOWED = {"models": {"devices"}, "devices": set(), "pipeline": {"devices", "models"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The first-party module `name` names, or the nearest package above it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and (target := _resolve(name, modules)):
                if target != module:
                    found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_packages_import_only_downwards() -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items() for target in targets
        if (source := module.split(".")[0]) != (goal := target.split(".")[0])
        and goal not in ALLOWED[source]
    )
    assert wrong == []


def test_no_file_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(graph: dict, expected: list) -> None:
    assert cycles(graph) == expected


def test_deferred_and_relative_imports_are_read(tmp_path: Path) -> None:
    """A function-level import counts: the checker must see pipeline.fleet -> pipeline.deploy
    even when written inside a function, and a relative import resolves to its module."""
    modules = {"pipeline.fleet": tmp_path / "fleet.py", "pipeline.deploy": tmp_path / "d.py",
               "pipeline": tmp_path / "__init__.py"}
    modules["pipeline.fleet"].write_text("def run():\n    from pipeline.deploy import x\n")
    assert imports_of("pipeline.fleet", modules["pipeline.fleet"], modules) == {"pipeline.deploy"}
    modules["pipeline.fleet"].write_text("from . import deploy\n")
    assert imports_of("pipeline.fleet", modules["pipeline.fleet"], modules) >= {"pipeline.deploy"}
