"""Fixtures of the trainer tests: one tiny shapes set per session and a shared text encoder."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.shapes.classifier import ShapeClassifier


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 px shapes benchmark: 64 train, 8 val, 8 held-out images (about a second)."""
    from training.shapes.scenes import make_benchmark

    root = tmp_path_factory.mktemp("shapes") / "data"
    make_benchmark(root, size=32, seed=0, n_train=64, n_val=8, n_test_heldout=8, progress=False)
    return root


@pytest.fixture(scope="session")
def small_shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 train images: three batches of 8 per epoch, so a few steps cross an epoch."""
    from training.shapes.scenes import make_benchmark

    root = tmp_path_factory.mktemp("shapes-small") / "data"
    make_benchmark(root, size=32, seed=1, n_train=24, n_val=8, n_test_heldout=8, progress=False)
    return root


@pytest.fixture(scope="module")
def new_trainer(text_encoder, single_thread: None) -> Callable[..., object]:
    """Trainer factory handing every Trainer the session's MiniLM instead of loading its own
    (about 3 s each on this machine); the encoder is frozen, so sharing it changes nothing."""
    from training.trainer import Trainer

    def make(config, run_dir, **kwargs):
        kwargs.setdefault("progress", False)
        kwargs.setdefault("text_encoder", text_encoder)
        return Trainer(config, run_dir, **kwargs)

    return make


@pytest.fixture(scope="module")
def train_cli(text_encoder, single_thread: None) -> Callable[..., int]:
    """`xmc-train` in this process, handed the session's MiniLM."""
    from training.cli import train_main

    def run(argv: list[str]) -> int:
        return train_main(argv, text_encoder=text_encoder)

    return run


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., object]:
    """TrainConfig factory: the tiny preset, batch 8 (two sub-batches of 4), no workers;
    `changes` as --set takes them ({"optim.steps": 3, "generator.gf_dim": 8})."""
    from training.config_io import apply_overrides, train_config

    def make(data: Path, changes: dict[str, object] | None = None) -> TrainConfig:
        values = {
            "preset": "tiny",
            "data.source": str(data),
            "optim.steps": 2,
            "optim.batch_size": 8,
            "optim.d_steps": 2,
            "run.num_workers": 0,
            "run.log_every": 1,
            "run.sample_every": 1000,
            "run.checkpoint_every": 1000,
        }
        values.update(changes or {})
        return train_config(apply_overrides({}, values))

    return make


@pytest.fixture(scope="session")
def classifier() -> ShapeClassifier:
    """The 32 px shape classifier, trained on ~450 real object crops (a few seconds)."""
    from training.shapes.classifier import ShapeClassifierConfig, train_shape_classifier

    return train_shape_classifier(ShapeClassifierConfig(size=32, train_scenes=300, gate_scenes=200))


@pytest.fixture(scope="session")
def scenes() -> list[dict[str, Any]]:
    """160 real 32 px scenes, val-like and held-out alike, with every relation."""
    from training.shapes.scenes import sample_scene

    return [
        sample_scene(random.Random(f"test-evaluate/{i}"), 32, heldout=i % 2 == 0)
        for i in range(160)
    ]
