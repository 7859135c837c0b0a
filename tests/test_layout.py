"""The house rules that a reader relies on: short files and functions, and imports that point one
way only (training -> models <- xmc_service; nothing in a library imports benchmarks/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("models", "training", "xmc_service")
SOURCES = sorted(
    path
    for folder in (*LIBRARIES, "benchmarks", "scripts")
    for path in (ROOT / folder).rglob("*.py")
)


def _imports(path: Path) -> set[str]:
    """Top-level packages this file imports, wherever the import statement stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_functions_stay_short(path: Path) -> None:
    source = path.read_text()
    assert source.count("\n") <= 400, f"{path.name}: over 400 lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= 60, f"{path.name}:{node.lineno} {node.name} is {length} lines"


def test_imports_point_one_way() -> None:
    allowed = {
        "models": ("models",),
        "training": ("models", "training"),
        "xmc_service": ("xmc_service", "models.pipeline", "models"),
    }
    for path in SOURCES:
        package = path.relative_to(ROOT).parts[0]
        if package not in allowed:
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            if top in (*LIBRARIES, "benchmarks", "tests"):
                assert top in {a.split(".")[0] for a in allowed[package]}, f"{path}: {name}"
            if package == "xmc_service" and top == "models":
                assert name in ("models", "models.pipeline"), f"{path}: {name} (via the pipeline)"
