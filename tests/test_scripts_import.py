"""Nothing broken can land (issue 30): every module under scripts/ and benchmarks/ imports, and
every import statement in the project, the lazy ones inside functions included, names a module
and an attribute that exist. Two scripts once imported names that had moved
(`training.faithfulness`, `checkpoint.CHECKPOINT_NAME`) and nothing ran them."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = sorted(p for folder in ("scripts", "benchmarks") for p in (ROOT / folder).glob("*.py"))
SOURCES = sorted(
    path
    for folder in ("models", "training", "xmc_service", "scripts", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
)
# the plotting library two scripts import when they draw (no extra installs it)
OPTIONAL = {"matplotlib"}


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", DRIVERS, ids=_ids)
def test_every_driver_imports(path: Path) -> None:
    if path.parent.name == "benchmarks":
        importlib.import_module(f"benchmarks.{path.stem}")
        return
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # scripts guard their work behind __main__
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every absolute import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", SOURCES, ids=_ids)
def test_every_import_statement_resolves(path: Path) -> None:
    for line, module_name, name in _imports(path):
        if module_name.split(".")[0] in OPTIONAL:
            continue
        where = f"{_ids(path)}:{line}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            pytest.fail(f"{where}: import {module_name}: {error}")
        if name is None or name == "*" or hasattr(module, name):
            continue
        try:  # `from package import submodule`
            importlib.import_module(f"{module_name}.{name}")
        except ModuleNotFoundError:
            pytest.fail(f"{where}: {module_name} has no {name}")
