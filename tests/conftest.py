"""Shared fixtures. Keep this file small: fixtures used by more than one test module only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def hf_offline() -> Iterator[None]:
    """No test may reach the Hugging Face hub: everything loads from the installed packages.

    huggingface_hub reads HF_HUB_OFFLINE once, at import, so the constant is patched as well.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        try:
            from huggingface_hub import constants
        except ImportError:  # pragma: no cover - transformers depends on it
            pass
        else:
            patch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny CPU tests: on the shared, oversubscribed 2-core
    machine two threads per op spin against each other and take about twice as long."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def text_encoder(hf_offline: None):
    """The default (packaged MiniLM) text encoder, loaded once: about 2 s."""
    from models.text_encoder import TextEncoder

    return TextEncoder.from_config()


@pytest.fixture(scope="session")
def tiny_artifact(hf_offline: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline artifact of the `tiny` preset (32 px, random weights). Treat as read-only."""
    from models.testing import make_tiny_artifact

    return make_tiny_artifact(tmp_path_factory.mktemp("tiny-artifact"))


@pytest.fixture(scope="module")
def load_script():
    """`load_script("make_bundle")`: a file of scripts/ (not a package) imported as a module."""
    import importlib.util

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
