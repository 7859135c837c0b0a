"""Fixtures of the GPU tier."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 px shapes benchmark: 64 train, 8 val, 8 held-out images."""
    from training.shapes.scenes import make_benchmark

    root = tmp_path_factory.mktemp("shapes") / "data"
    make_benchmark(root, size=32, seed=0, n_train=64, n_val=8, n_test_heldout=8, progress=False)
    return root
