"""benchmarks.caption_probe: the edits say what they claim, and a run's D is scored on them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

SCENE = {
    "background": "gray",
    "relation": "left of",
    "objects": [
        {"shape": "circle", "color": "red", "size": "small", "bbox": [1, 10, 8, 8]},
        {"shape": "square", "color": "yellow", "size": "large", "bbox": [18, 8, 14, 14]},
    ],
}


def test_each_edit_changes_what_its_name_says() -> None:
    from benchmarks.caption_probe import edited_captions

    edits = edited_captions(SCENE, random.Random(0))
    assert edits["caption"] == "a red circle left of a yellow square"
    assert edits["relation"] == "a red circle right of a yellow square"
    assert edits["binding"] == "a yellow circle left of a red square"
    assert edits["shape_binding"] == "a red square left of a yellow circle"
    assert edits["paraphrase"] == "a yellow square right of a red circle"
    assert edits["reversed paraphrase"] == "a yellow square left of a red circle"
    colour, shape = edits["colour"].split(), edits["shape"].split()
    assert (
        colour[1] not in ("red", "yellow")
        and colour[2:] == "circle left of a yellow square".split()
    )
    assert (
        shape[2] in ("triangle", "square")
        and shape[:2] == ["a", "red"]
        and shape[3:] == ("left of a yellow square".split())
    )
    one = {**SCENE, "relation": None, "objects": SCENE["objects"][:1]}
    assert edited_captions(one, random.Random(0)) is None


def test_linear_share_is_zero_for_a_bag_of_words_and_one_when_the_pairs_agree() -> None:
    import torch

    from benchmarks.caption_probe import linear_share

    g = torch.Generator().manual_seed(0)
    red, square, left, right = torch.randn(4, 1, 8, generator=g)
    subject, object_ = torch.randn(2, 1, 8, generator=g)  # roles: word order a BoW ignores
    bag = [red + square + left, red + square + right, red + square + right, red + square + left]
    assert linear_share(*bag) == pytest.approx(0.0, abs=1e-6)
    # "red-as-subject of left" marks the true captions alike: d1 = d2, all of it usable
    agree = [subject + left, subject + right, object_ + left, object_ + right]
    agree[2], agree[3] = agree[0], agree[1]
    assert linear_share(*agree) == pytest.approx(1.0)
    # half of each difference shared, half opposed: |d1 + d2| = |a| = 2, |d1| + |d2| = 2 sqrt 2
    a = torch.tensor([[2.0, 0.0]])
    b = torch.tensor([[0.0, 2.0]])
    zero = torch.zeros(1, 2)
    assert linear_share((a + b) / 2, zero, (a - b) / 2, zero) == pytest.approx(2 / (2 * 2**0.5))


def test_an_edit_that_would_name_an_unseen_pair_is_left_out() -> None:
    from benchmarks.caption_probe import edited_captions

    # exchanging the colours would make a blue circle, a held-out pair
    scene = {**SCENE, "objects": [{**SCENE["objects"][0], "color": "blue"}, SCENE["objects"][1]]}
    scene["objects"][1] = {**SCENE["objects"][1], "shape": "circle", "color": "yellow"}
    scene["objects"][0]["shape"] = "square"
    assert "binding" not in edited_captions(scene, random.Random(0))
    for _ in range(20):  # a replaced colour or shape never makes one either
        edits = edited_captions(SCENE, random.Random(_))
        assert "blue circle" not in edits["colour"] and "red triangle" not in edits["shape"]


def test_a_run_is_probed_on_its_split_two_object_scenes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from benchmarks.caption_probe import EDITS, main
    from training.cli import train_main
    from training.metrics.sampling import load_split
    from training.shapes.scenes import make_benchmark

    data = tmp_path / "data"
    make_benchmark(data, size=32, seed=0, n_train=16, n_val=12, n_test_heldout=4, progress=False)
    run = tmp_path / "run"
    argv = [str(run), "--preset", "tiny", "--data", str(data), "--steps", "2"]
    assert train_main([*argv, "--batch-size", "4", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "probe.json"
    assert main([str(run), "--data", str(data), "--num", "12", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    pairs = sum(len(r.attributes["objects"]) == 2 for r in load_split(data, "val", 12))
    assert pairs > 0 and result["scenes"] == pairs and result["step"] == 2
    assert {"relation", "colour", "paraphrase"} <= set(result["edits"]) <= set(EDITS)
    assert 0.0 <= result["relation_linear_share"] <= 1.0
    assert f"can use {result['relation_linear_share']:.3f} of the edit" in printed
    for edit, row in result["edits"].items():
        assert f"| {edit} | {row['scenes']} |" in printed
        for d in ("trained", "untrained"):
            assert 0.0 <= row[d]["sentence"] <= 1.0 and 0.0 <= row[d]["word"] <= 1.0
        assert -1.0 <= row["text_cosine"] < 1.0  # every edit changes the sentence embedding
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "missing"), "--data", str(data)])
    assert stop.value.code == 2 and "not a training run" in capsys.readouterr().err
