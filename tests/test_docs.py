"""The docs as references (issue 30): the README's and the model cards' Python snippets run as
written (tiny or bundled model, CPU, offline), every relative link in the docs resolves, and no
reference page or library docstring points at a path outside the repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "bundled" / "default"
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
SERVER = "http://localhost:8000"  # where the README's client snippets expect the service


def _snippets(path: Path) -> list[str]:
    return SNIPPET.findall(path.read_text())


def _run(code: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__snippet__"}
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the docs' own examples
    return namespace


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_thread: None) -> Path:
    """Snippets write their images into the working directory: a fresh one, offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def test_the_readme_and_model_card_snippets_are_found() -> None:
    assert len(_snippets(ROOT / "README.md")) >= 2
    assert len(_snippets(BUNDLE / "README.md")) == 1
    assert not _snippets(BUNDLE / "MODEL_CARD.md")  # its commands are shell, run by CI's steps


def test_the_readmes_model_snippets_run(in_tmp: Path) -> None:
    """Every README snippet that needs no server, and the bundle's own card."""
    from PIL import Image

    local = [s for s in _snippets(ROOT / "README.md") if SERVER not in s]
    assert local
    for index, code in enumerate(local):
        _run(code, f"README.md python block {index}")
    for index, code in enumerate(_snippets(BUNDLE / "README.md")):
        _run(code, f"{BUNDLE / 'README.md'} python block {index}")
    written = sorted(p.name for p in in_tmp.glob("*.png"))
    assert written and all(Image.open(in_tmp / name).size == (32, 32) for name in written)


def test_the_readmes_client_snippets_run_against_the_service(in_tmp: Path, tiny_artifact) -> None:
    from models import XMCGANPipeline
    from tests.service.conftest import running_server
    from xmc_service.app import create_app
    from xmc_service.settings import Settings

    clients = [s for s in _snippets(ROOT / "README.md") if SERVER in s]
    assert clients
    pipeline = XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")
    with running_server(create_app(Settings(max_wait_ms=2.0), pipeline=pipeline)) as base:
        for index, code in enumerate(clients):
            _run(code.replace(SERVER, base), f"README.md client block {index}")
    assert (in_tmp / "image.png").stat().st_size > 0


def test_an_exported_models_card_snippet_runs(in_tmp: Path, tiny_artifact) -> None:
    """`xmc-export` writes README.md beside the weights (models.hub.write_model_card): its
    snippet loads that folder and draws a caption of its kind."""
    import shutil

    from models.hub import write_model_card

    export = shutil.copytree(tiny_artifact, in_tmp / "export")
    card = write_model_card(export, "xmc-tiny", tags=["tiny"])
    (code,) = _snippets(card)
    assert "from_pretrained(" in code and "a red circle above a blue square" in code
    _run(code, str(card))
    assert (in_tmp / "image.png").is_file()
    coco = write_model_card(export, "org/xmc-coco", tags=["coco-256"]).read_text()
    assert 'from_pretrained("org/xmc-coco")' in coco and "circle" not in coco


def _markdown() -> list[Path]:
    def kept(path: Path) -> bool:  # the project's pages: no tool caches, no test fixtures
        parts = path.relative_to(ROOT).parts
        return parts[0] != "tests" and not any(part.startswith(".") for part in parts)

    return sorted(p for p in ROOT.rglob("*.md") if kept(p))


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for path in _markdown():
        for target in LINK.findall(path.read_text()):
            if re.match(r"^[a-z]+:|^#|^<", target):
                continue
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_nothing_points_outside_the_repository() -> None:
    """A reader has the repository, not the machine it was written on (experiment logs may
    quote a run's own paths)."""
    sources = [p for f in ("models", "training", "xmc_service") for p in (ROOT / f).rglob("*.py")]
    pages = [p for p in _markdown() if "experiments" not in p.relative_to(ROOT).parts]
    outside = [p.relative_to(ROOT) for p in sources + pages if "/work/" in p.read_text()]
    assert not outside, outside
