"""benchmarks.layout_capacity: the placement measure on real renders, and a short run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _scene(relation: str) -> dict:
    circle = {"shape": "circle", "color": "red", "size": "large", "bbox": [2, 2, 10, 10]}
    square = {"shape": "square", "color": "blue", "size": "large", "bbox": [20, 20, 10, 10]}
    return {"background": "white", "relation": relation, "objects": [circle, square]}


@pytest.mark.parametrize(
    ("relation", "right"),
    [("left of", True), ("above", True), ("right of", False), ("below", False)],
)
def test_placement_reads_which_half_holds_each_colour(relation: str, right: bool) -> None:
    import numpy as np
    import torch

    from benchmarks.layout_capacity import placement
    from training.shapes.scenes import render_scene

    scene = _scene(relation)  # red at the top left, blue at the bottom right
    pixels = torch.from_numpy(np.array(render_scene(scene, 32))).float()  # (32, 32, 3)
    image = pixels.permute(2, 0, 1)[None] / 255.0
    assert placement(image, [scene]).tolist() == [right]
    assert placement(image, [scene], reverse=True).tolist() == [not right]
    blank = torch.full_like(image, 235 / 255.0)  # the background alone places nothing
    assert placement(blank, [scene]).tolist() == [False]


def test_a_short_run_and_a_measure_report_their_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from benchmarks.layout_capacity import main
    from training.shapes.scenes import make_benchmark

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=60, n_val=30, n_test_heldout=4, progress=False)
    out = tmp_path / "capacity.json"
    argv = ["--data", str(data), "--preset", "tiny", "--init", "none", "--steps", "2"]
    assert main([*argv, "--batch-size", "4", "--paths", "sentence-head", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["real_right"] == 1.0 and result["val_scenes"] > 0
    assert result["paths"] == ["sentence-head"] and result["steps"] == 2
    for figures in (result["before"], result["after"]):
        assert 0.0 <= figures["follows"] <= figures["right"] <= 1.0
    assert f"right {result['before']['right']:.3f} -> " in capsys.readouterr().out
    bundle = ["--data", str(data), "--measure", "models/bundled/default"]
    assert main(bundle) == 0
    assert "models/bundled/default: right " in capsys.readouterr().out


def test_a_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks.layout_capacity import main
    from training.shapes.scenes import make_benchmark

    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=4, n_val=30, n_test_heldout=4, progress=False)
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(data), "--measure", str(tmp_path / "nothing")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("layout_capacity: ")
