"""benchmarks.relation_capacity: the scenes' captions and their reversals, and a short run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_each_two_object_scene_gets_its_captions_and_their_reversals() -> None:
    from benchmarks.relation_capacity import scene_captions

    circle = {"shape": "circle", "color": "red", "size": "small", "bbox": [1, 10, 8, 8]}
    square = {"shape": "square", "color": "yellow", "size": "large", "bbox": [18, 8, 14, 14]}
    two = {"background": "gray", "relation": "left of", "objects": [circle, square]}
    one = {"background": "gray", "relation": None, "objects": [circle]}
    records = [type("Record", (), {"attributes": a})() for a in (one, two)]
    kept, true, reversed_ = scene_captions(records)
    assert kept == [1]
    assert true == [
        ["a red circle left of a yellow square", "a yellow square right of a red circle"]
    ]
    assert reversed_ == [
        ["a red circle right of a yellow square", "a yellow square left of a red circle"]
    ]


def test_a_short_run_reports_both_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from benchmarks.relation_capacity import main
    from training.shapes.scenes import make_benchmark

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=24, n_val=12, n_test_heldout=4, progress=False)
    out = tmp_path / "capacity.json"
    argv = ["--data", str(data), "--preset", "tiny", "--steps", "2", "--batch-size", "4"]
    assert main([*argv, "--coords", "--sentence-head", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["coords"] and result["sentence_head"] and result["steps"] == 2
    assert result["val_scenes"] > 0 and set(result["relation_share"]) == {"caption", "paraphrase"}
    assert all(0.0 <= share <= 1.0 for share in result["relation_share"].values())
    assert f"caption {result['relation_share']['caption']:.3f}" in capsys.readouterr().out
