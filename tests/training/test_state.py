"""The trainer's state as a type (`training.state`): checkpoints keep their format, and one
written before the type existed resumes.

`fixtures/checkpoint-0000002.pt` (+ its .sha256) was written by the trainer of main at
beda108, before `TrainerState`: the tiny preset, 2 steps of batch 8 (d_steps 2, seed 0, no
workers) on `small_shapes_root`'s set (make_benchmark size 32, seed 1, 24 train images), the
settings of `tiny_config`; MiniLM text encoder.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tests.training.states import assert_identical, trained_state
from training.checkpoint import COUNTERS, REQUIRED_KEYS, load_checkpoint
from training.state import Progress

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-0000002.pt"


def test_progress_fields_are_the_checkpoint_counters() -> None:
    assert tuple(field.name for field in dataclasses.fields(Progress)) == COUNTERS


def test_a_checkpoint_written_before_the_state_type_resumes(
    small_shapes_root, tiny_config, new_trainer, tmp_path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for path in (FIXTURE, FIXTURE.with_name(FIXTURE.name + ".sha256")):
        shutil.copy(path, run_dir / path.name)
    old = load_checkpoint(run_dir / FIXTURE.name)
    trainer = new_trainer(tiny_config(small_shapes_root, {"optim.steps": 4}), run_dir)
    assert trainer.resumed_from == run_dir / FIXTURE.name
    assert (trainer.step, trainer.images_seen, trainer.skipped_steps) == (2, 16, 0)
    assert (trainer.data.epoch, trainer.data.image_in_epoch) == (0, 16)
    now = trainer.state_dict()
    assert set(now) == set(old) and set(REQUIRED_KEYS) <= set(now)  # the same format
    # every weight, optimiser moment, counter and RNG state loaded bit for bit
    assert_identical(trained_state(old), trained_state(now))
    assert_identical({k: old[k] for k in COUNTERS}, {k: now[k] for k in COUNTERS})
    assert_identical(old["rng"], now["rng"])
    assert now["stream_positions"] == old["stream_positions"]
    summary = trainer.fit()
    assert (summary["step"], summary["images"], summary["interrupted"]) == (4, 32, False)
    resumed = load_checkpoint(run_dir / "checkpoint-0000004.pt")
    assert (resumed["step"], resumed["epoch"], resumed["image_in_epoch"]) == (4, 1, 8)
