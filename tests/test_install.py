"""The install contract: the README's two commands, .ci/run and the Dockerfile all install the
versions that requirements.lock names, and the lock pins every dependency pyproject.toml lists."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r"pip install (?P<args>.*?)\s+&&")


def _name(requirement: str) -> str:
    """'pydantic-settings>=2.1' -> 'pydantic-settings', normalised as pip does."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[_name(name)] = version
    return pins


def test_the_lock_pins_every_dependency_but_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    pins = _lock()
    assert "torch" not in pins, "torch is pinned by the install commands, not the lock"
    assert wanted - {"torch"} <= set(pins), f"not in requirements.lock: {wanted - set(pins)}"


def test_readme_and_ci_install_through_the_lock() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    serve, test = first_block[:2]
    assert "xmc-serve" in serve and "python -m pytest" in test
    for command in (serve, test):
        assert "-c requirements.lock torch==2.13.0" in INSTALL.search(command).group("args")
    ci = (ROOT / ".ci" / "run").read_text()
    test_install = INSTALL.search(test).group("args")
    assert f"pip install -q {test_install}\n" in ci, "the CI install differs from the README's"
    assert "\npython3 -m pytest\n" in ci


def test_the_docker_image_installs_the_locked_versions() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml requirements.lock" in dockerfile
    assert "-c /tmp/requirements.lock" in dockerfile
