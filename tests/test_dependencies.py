"""pyproject.toml declares exactly what the packages import: every third-party import of
pipeline/, models/ and devices/ (deferred ones included) is a main dependency, or belongs
to the optional extra named in OPTIONAL_IMPORTS, and every main dependency is imported."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import files, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "models", "devices")
# imports a package makes only where an extra or the user's environment has them: import
# name -> (distribution, extra); tflite_runtime is the device side's alternative to
# ai-edge-litert, IPython the notebook's own (pipeline/api.py renders inline with it), ray
# the cluster study's (pipeline/study/ray_executor.py)
OPTIONAL_IMPORTS = {"serial": ("pyserial", "serial"),
                    "tflite_runtime": ("tflite-runtime", None),
                    "IPython": ("ipython", None),
                    "ray": ("ray", "cluster")}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalised(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def imported_names() -> set[str]:
    """Every third-party module imported, as written (`google.protobuf.message`)."""
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
    return {name for name in names if (top := name.split(".")[0]) not in sys.stdlib_module_names
            and top not in (*PACKAGES, "__future__")}


def owners(name: str, distributions: dict[str, list[str]]) -> set[str]:
    """The distributions that hold module `name`: of a namespace package that several
    install into (`google`: protobuf, and google-api-core with the cluster extra), only
    those holding the imported sub-package."""
    top, *rest = name.split(".")
    candidates = distributions[top]
    if len(candidates) == 1 or not rest:
        return set(candidates)
    folder = f"{top}/{rest[0]}/"
    return {candidate for candidate in candidates
            if any(str(path).startswith(folder) for path in files(candidate) or [])}


def test_declared_dependencies_are_exactly_the_imported_ones() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {requirement_name(item) for item in project["dependencies"]}
    extras = {name: {requirement_name(item) for item in items}
              for name, items in project["optional-dependencies"].items()}
    distributions = packages_distributions()
    imported, optional = set(), set()
    for name in imported_names():
        module = name.split(".")[0]
        if module in OPTIONAL_IMPORTS:
            distribution, extra = OPTIONAL_IMPORTS[module]
            optional.add(distribution)
            assert extra is None or distribution in extras[extra], (module, extra)
            continue
        assert module in distributions, f"{module} is imported but no installed package has it"
        imported.update(normalised(owner) for owner in owners(name, distributions))
    assert imported - declared == set(), "imported, not declared"
    assert declared - imported == set(), "declared, not imported"
    assert not optional & declared  # optional ones stay out of the main list


def test_the_device_extra_runs_the_bench_runner() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    device = {requirement_name(item) for item in project["optional-dependencies"]["device"]}
    runner = (ROOT / "devices" / "bench_runner.py").read_text()
    assert {"numpy", "ai-edge-litert", "onnxruntime"} <= device
    assert all(module in runner for module in ("numpy", "ai_edge_litert", "onnxruntime"))
