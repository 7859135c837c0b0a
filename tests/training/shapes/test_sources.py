"""Fresh scenes: the scenes of a split that the benchmark of another seed holds, in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.shapes.scenes import HELDOUT_PAIRS, make_benchmark


def test_fresh_scenes_are_the_benchmark_of_their_seed(tmp_path: Path) -> None:
    from training.shapes.sources import fresh_scenes

    make_benchmark(tmp_path, size=32, seed=5, n_train=0, n_val=6, n_test_heldout=6, progress=False)
    for split in ("val", "test_heldout"):
        written = json.loads((tmp_path / "annotations" / f"captions_{split}.json").read_text())
        drawn = fresh_scenes(split, 6, 32, seed=5)
        assert [image_id for image_id, _, _ in drawn] == [i["id"] for i in written["images"]]
        assert [scene for _, scene, _ in drawn] == [i["attributes"] for i in written["images"]]
        captions = [a["caption"] for a in written["annotations"]]
        assert [c for _, _, five in drawn for c in five] == captions


def test_fresh_scenes_of_another_seed_are_new_and_keep_the_split_rule() -> None:
    from training.shapes.sources import fresh_scenes

    for split, heldout in (("val", False), ("test_heldout", True)):
        split_scenes = [scene for _, scene, _ in fresh_scenes(split, 100, 32, seed=0)]
        fresh = [scene for _, scene, _ in fresh_scenes(split, 100, 32, seed=7)]
        assert sum(scene in split_scenes for scene in fresh) < 5  # new scenes, not the split's
        for scene in fresh:
            pairs = [(obj["color"], obj["shape"]) for obj in scene["objects"]]
            assert any(pair in HELDOUT_PAIRS for pair in pairs) == heldout, (split, scene)
        assert {len(scene["objects"]) for scene in fresh} == {1, 2}
        two = fresh_scenes(split, 40, 32, seed=7, objects=2)
        assert len(two) == 40 and all(len(scene["objects"]) == 2 for _, scene, _ in two)
        # The two-object scenes are those of the full draw, in order.
        assert [s for _, s, _ in two][:10] == [s for s in fresh if len(s["objects"]) == 2][:10]


def test_fresh_scenes_refuse_bad_arguments() -> None:
    from training.shapes.scenes import BenchmarkError
    from training.shapes.sources import fresh_scenes

    with pytest.raises(BenchmarkError, match="unknown split 'test'"):
        fresh_scenes("test", 4, 32, seed=1)
    with pytest.raises(BenchmarkError, match="objects must be 1 or 2"):
        fresh_scenes("val", 4, 32, seed=1, objects=3)
    with pytest.raises(BenchmarkError, match=">= 1"):
        fresh_scenes("val", 0, 32, seed=1)
