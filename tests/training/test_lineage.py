"""training.lineage: images and wall hours add up through a chain of runs (bundle, arm, fork)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.lineage import prior_training, record_totals, wall_seconds


def _stats(path: Path, rows: list[tuple[int, float]]) -> Path:
    """A stats.jsonl: (images so far, img/s over the interval) per line."""
    path.write_text("".join(json.dumps({"images": i, "img_per_s": r}) + "\n" for i, r in rows))
    return path


def _export(directory: Path, images: int, **totals: float) -> Path:
    directory.mkdir(parents=True)
    training = {"images": images, "steps": images // 16, **totals}
    (directory / "config.json").write_text(json.dumps({"training": training}))
    return directory


def test_wall_seconds_sums_each_interval_and_stops_at_a_checkpoint(tmp_path: Path) -> None:
    stats = _stats(tmp_path / "stats.jsonl", [(100, 10.0), (200, 20.0), (400, 40.0)])
    assert wall_seconds(stats) == (pytest.approx(10 + 5 + 5), 400)
    assert wall_seconds(stats, up_to_images=200) == (pytest.approx(15), 200)
    assert wall_seconds(stats, up_to_images=50) == (0.0, 0)


def test_totals_carry_through_a_chain_of_runs(tmp_path: Path) -> None:
    bundle = _export(tmp_path / "bundle", 500, images_total=1500, wall_hours_total=2.0)
    assert prior_training({}) == {"images": 0, "hours": 0.0}
    # an arm that started from the bundle, saved at 3600 of its images after one hour
    arm = _export(tmp_path / "arm", 3600)
    stats = _stats(tmp_path / "arm.jsonl", [(3600, 1.0), (7200, 1.0)])  # beyond the save: left out
    totals = record_totals(arm, {"run.init_generator": str(bundle)}, stats)
    assert (totals["images_total"], totals["wall_hours_total"]) == (5100, 3.0)
    assert totals["prior"] == {"images": 1500, "hours": 2.0}
    # a fork of the arm adds its own to the arm's totals, read from the arm's config.json
    fork = _export(tmp_path / "fork", 360)
    stats = _stats(tmp_path / "fork.jsonl", [(360, 0.5)])
    totals = record_totals(fork, {"run.init_generator": str(arm)}, stats)
    assert (totals["images_total"], totals["wall_hours_total"]) == (5460, 3.2)
    written = json.loads((fork / "config.json").read_text())["training"]
    assert (written["images_total"], written["wall_hours_total"]) == (5460, 3.2)


def test_an_export_without_totals_counts_its_own_images_and_the_hours_given(
    tmp_path: Path,
) -> None:
    old = _export(tmp_path / "old", 800)
    assert prior_training({"run.init_generator": str(old)}, prior_hours=1.5) == {
        "images": 800,
        "hours": 1.5,
    }
