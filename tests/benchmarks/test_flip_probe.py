"""benchmarks.flip_probe: twins say what they claim, and the probe's figures follow the drawings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

SIZE = 32


@pytest.fixture(scope="module")
def classifier(single_thread: None) -> Any:
    """The 32 px shape classifier, trained on ~450 real object crops (a few seconds)."""
    from training.shapes.classifier import ShapeClassifierConfig, train_shape_classifier

    return train_shape_classifier(
        ShapeClassifierConfig(size=SIZE, train_scenes=300, gate_scenes=200)
    )


class Renderer:
    """A stand-in pipeline drawing, for each caption, the scene `scenes` maps it to."""

    resolution = SIZE
    model_id = "renderer"

    def __init__(self, scenes: dict[str, dict[str, Any]]) -> None:
        self.scenes = scenes

    def encode_text(self, captions: list[str]) -> list[str]:
        return list(captions)

    def generate(self, captions: list[str], seeds: list[int]) -> torch.Tensor:
        from training.shapes.pixels import as_float_images
        from training.shapes.scenes import render_scene

        images = [render_scene(self.scenes[caption], SIZE) for caption in captions]
        return as_float_images(images, SIZE) / 255  # (B, 3, S, S) in [0, 1]


def _placed(scene: dict[str, Any]) -> dict[str, Any]:
    """The scene with its two objects' boxes exchanged: the drawing of its reversed relation."""
    first, second = scene["objects"]
    return {
        **scene,
        "objects": [{**first, "bbox": second["bbox"]}, {**second, "bbox": first["bbox"]}],
    }


HEADLINE_DRAWN = {
    "background": "gray",
    "relation": "above",
    "objects": [
        {"shape": "circle", "color": "red", "size": "large", "bbox": [4, 2, 14, 14]},
        {"shape": "square", "color": "blue", "size": "large", "bbox": [12, 17, 14, 14]},
    ],
}


def test_twins_edit_the_caption_and_the_scene_alike() -> None:
    from benchmarks.flip_probe import twins

    scene = {**HEADLINE_DRAWN}
    edits = twins("a red circle above a blue square", scene)
    assert edits["flipped"][0] == "a red circle below a blue square"
    assert edits["flipped"][1]["relation"] == "below"
    assert edits["swapped"][0] == "a blue circle above a red square"
    assert [o["color"] for o in edits["swapped"][1]["objects"]] == ["blue", "red"]
    assert edits["original"] == ("a red circle above a blue square", scene)
    # No relation named: no flipped twin, so no twins at all.
    assert twins("gray background , a red circle and a blue square", scene) == {}


def test_a_model_that_follows_the_caption_scores_one(classifier: Any) -> None:
    from benchmarks.flip_probe import probe, probe_scenes
    from training.shapes.headline import HEADLINE

    scenes = probe_scenes(12, "val", 3, SIZE)
    drawn = {HEADLINE: HEADLINE_DRAWN}
    for twin in scenes:
        drawn[twin["original"][0]] = twin["original"][1]
        drawn[twin["flipped"][0]] = _placed(twin["flipped"][1])
        drawn[twin["swapped"][0]] = twin["swapped"][1]
    result = probe(Renderer(drawn), classifier, num=12, split="val", seed=3)
    assert result["relation_flip"]["follows"] == 1.0
    assert result["colour_swap"]["follows"] == 1.0
    assert result["original_whole_caption"] == 1.0
    assert result["relation_flip"]["pixel_difference"] > 1.0
    assert result["colour_swap"]["pixel_difference"] > 1.0
    assert result["headline"]["right"] == 16


def test_a_model_that_ignores_the_edits_scores_zero(classifier: Any) -> None:
    from benchmarks.flip_probe import probe, probe_scenes
    from training.shapes.headline import HEADLINE

    scenes = probe_scenes(12, "val", 3, SIZE)
    # Every twin drawn as the original scene; the headline drawn with its binding swapped.
    drawn = {
        HEADLINE: {
            **HEADLINE_DRAWN,
            "objects": [
                {**HEADLINE_DRAWN["objects"][0], "shape": "square"},
                {**HEADLINE_DRAWN["objects"][1], "shape": "circle"},
            ],
        }
    }
    for twin in scenes:
        for kind in ("original", "flipped", "swapped"):
            drawn[twin[kind][0]] = twin["original"][1]
    result = probe(Renderer(drawn), classifier, num=12, split="val", seed=3)
    assert result["relation_flip"]["follows"] == 0.0
    assert result["relation_flip"]["flipped_relation"] == 0.0
    assert result["colour_swap"]["follows"] == 0.0
    assert result["colour_swap"]["pixel_difference"] == 0.0
    assert result["headline"]["right"] == 0 and result["headline"]["binding"] == 0


def test_probe_runs_on_a_tiny_model(
    tiny_artifact: Path, classifier: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.flip_probe import main
    from training.shapes.classifier import cache_path, save_classifier

    save_classifier(classifier, cache_path(tmp_path, SIZE))
    out = tmp_path / "probe.json"
    code = main(
        [
            "--model",
            str(tiny_artifact),
            "--num",
            "4",
            "--cache-dir",
            str(tmp_path),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "right in" in printed and "of 16 seeds" in printed
    result = json.loads(out.read_text())
    assert result["num_scenes"] == 4 and result["model_id"] == "xmc-tiny"
    for block in ("relation_flip", "colour_swap"):
        for key, value in result[block].items():
            bound = 255.0 if key == "pixel_difference" else 1.0
            assert 0.0 <= value <= bound, (block, key, value)
        assert result[block]["pixel_difference"] > 0.0  # the tiny model reads its caption
    assert 0 <= result["headline"]["right"] <= 16
    code = main(["--model", str(tiny_artifact), "--num", "0", "--cache-dir", str(tmp_path)])
    assert code == 2 and "--num must be >= 1" in capsys.readouterr().err
