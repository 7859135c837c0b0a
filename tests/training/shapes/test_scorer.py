"""The faithfulness scorer, its shape classifier and pixel measures, at 32 px on one thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.fakes import SIZE
from training.shapes import pixels
from training.shapes.classifier import (
    ShapeClassifier,
    ShapeClassifierConfig,
    ShapeClassifierError,
    ShapeCNN,
    cache_path,
    load_or_train,
    save_classifier,
    train_shape_classifier,
)
from training.shapes.scenes import PALETTE_OBJECTS, render_scene
from training.shapes.scorer import AttributesError, FoundObject, match_objects, score_images


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs on one intra-op thread (see tests/conftest.py)."""


def _render(scenes: list[dict[str, Any]]) -> list[Image.Image]:
    return [render_scene(scene, SIZE) for scene in scenes]


# --- the shape classifier ------------------------------------------------------------------


def test_classifier_passes_the_gate_on_real_val_objects(classifier: ShapeClassifier) -> None:
    assert classifier.val_accuracy >= 0.98
    classifier.check_gate()


def test_classifier_training_is_deterministic() -> None:
    config = ShapeClassifierConfig(size=SIZE, train_scenes=24, gate_scenes=8, epochs=1)
    first, second = train_shape_classifier(config), train_shape_classifier(config)
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, second.network.state_dict()[name]), name
    assert first.val_accuracy == second.val_accuracy


def test_classifier_cache_is_written_and_reused(
    tmp_path: Path, classifier: ShapeClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_classifier(classifier, cache_path(tmp_path, SIZE))
    assert (tmp_path / "shape_cnn_32.safetensors").is_file()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached classifier must not be retrained")

    monkeypatch.setattr("training.shapes.classifier.train_shape_classifier", no_training)
    loaded = load_or_train(SIZE, cache_dir=tmp_path)
    assert loaded.val_accuracy == classifier.val_accuracy
    for name, tensor in classifier.network.state_dict().items():
        assert torch.equal(tensor, loaded.network.state_dict()[name]), name


def test_scorer_refuses_shapes_below_the_gate(scenes: list[dict[str, Any]]) -> None:
    weak = ShapeClassifier(ShapeCNN(), SIZE, val_accuracy=0.9)
    with pytest.raises(ShapeClassifierError, match="98%"):
        score_images(_render(scenes[:2]), scenes[:2], SIZE, shape_classifier=weak)


# --- the faithfulness scorer ---------------------------------------------------------------


def test_real_renders_score_at_the_ceiling(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    result = score_images(_render(scenes), scenes, SIZE, shape_classifier=classifier)
    assert result["mean"] >= 0.97
    for attribute in ("background", "color", "shape", "relation"):
        assert result[attribute] >= 0.97, (attribute, result)
    objects = sum(len(scene["objects"]) for scene in scenes)
    pairs = sum(len(scene["objects"]) == 2 for scene in scenes)
    assert result["counts"] == {
        "background": len(scenes),
        "color": objects,
        "shape": objects,
        "relation": pairs,
    }
    assert result["num_images"] == len(scenes)


def test_tensor_and_pil_inputs_score_the_same(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    images = _render(scenes[:20])
    tensor = (
        torch.stack(
            [torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) for image in images]
        ).float()
        / 255
    )
    from_pil = score_images(images, scenes[:20], SIZE, shape_classifier=classifier)
    from_tensor = score_images(tensor, scenes[:20], SIZE, shape_classifier=classifier)
    assert from_pil == from_tensor


def test_noise_scores_low(classifier: ShapeClassifier, scenes: list[dict[str, Any]]) -> None:
    noise = torch.rand(len(scenes), 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    assert score_images(noise, scenes, SIZE, shape_classifier=classifier)["mean"] < 0.4


def test_other_colours_fail_the_colour_check(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    names = list(PALETTE_OBJECTS)
    recoloured = [
        {
            **scene,
            "objects": [
                {**obj, "color": names[(names.index(obj["color"]) + 3) % 8]}
                for obj in scene["objects"]
            ],
        }
        for scene in scenes
    ]
    result = score_images(_render(recoloured), scenes, SIZE, shape_classifier=classifier)
    assert result["color"] < 0.1
    assert result["shape"] >= 0.97 and result["background"] >= 0.97


def test_swapped_colours_fail_the_colour_check(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    # Two objects of different shapes and colours, drawn with each other's colour.
    chosen = [
        scene
        for scene in scenes
        if len(scene["objects"]) == 2
        and len({obj["shape"] for obj in scene["objects"]}) == 2
        and len({obj["color"] for obj in scene["objects"]}) == 2
    ]
    swapped = [
        {
            **scene,
            "objects": [{**first, "color": second["color"]}, {**second, "color": first["color"]}],
        }
        for scene in chosen
        for first, second in [scene["objects"]]
    ]
    assert len(chosen) >= 10
    result = score_images(_render(swapped), chosen, SIZE, shape_classifier=classifier)
    assert result["color"] == 0.0
    assert result["shape"] >= 0.97


def test_mirrored_images_fail_the_relation(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    sideways = [scene for scene in scenes if scene["relation"] in ("left of", "right of")]
    assert len(sideways) >= 10
    mirrored = [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in _render(sideways)]
    result = score_images(mirrored, sideways, SIZE, shape_classifier=classifier)
    assert result["relation"] == 0.0
    assert result["color"] >= 0.97 and result["shape"] >= 0.97


def test_a_missing_object_fails_its_checks(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    pairs = [scene for scene in scenes if len(scene["objects"]) == 2][:10]
    first_only = [{**scene, "objects": scene["objects"][:1], "relation": None} for scene in pairs]
    result = score_images(
        _render(first_only), pairs, SIZE, shape_classifier=classifier, return_details=True
    )
    for checks in result["per_image"]:
        assert checks["background"] == [True]
        assert checks["color"] == [True, False] and checks["shape"] == [True, False]
        assert checks["relation"] == [False]
    assert result["mean"] == pytest.approx((10 + 10 + 10) / (10 * 6))


def test_indistinguishable_objects_fail_the_relation() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    left = FoundObject(mask, "red", "circle", x=0.0, y=1.0)
    right = FoundObject(mask, "red", "circle", x=3.0, y=1.0)
    expected = [{"color": "red", "shape": "circle"}, {"color": "blue", "shape": "circle"}]
    matched, sure = match_objects(expected, [right, left], "left of")
    assert matched == [left, right] and not sure  # tie: halves decide, relation unreadable
    expected[1]["color"] = "red"
    expected[1]["shape"] = "square"
    square = FoundObject(mask, "red", "square", x=0.0, y=1.0)
    matched, sure = match_objects(expected, [right, square], "left of")
    assert matched == [right, square] and sure  # appearance decides, whatever the position


def test_components_are_eight_connected() -> None:
    masks = torch.zeros(1, 6, 6, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    masks[0, 2, 2] = True  # touches the first blob diagonally
    masks[0, 4:6, 4:6] = True
    labels = pixels.label_components(masks)[0]
    assert labels[0, 0] == labels[2, 2] != labels[5, 5]
    assert len(labels.unique()) == 3  # two components and the background


def test_bad_inputs_raise_clear_errors(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    with pytest.raises(pixels.ImageInputError, match="expected 32x32"):
        score_images(torch.rand(1, 3, 16, 16), scenes[:1], SIZE, shape_classifier=classifier)
    with pytest.raises(AttributesError, match="2 images but 1"):
        score_images(torch.rand(2, 3, SIZE, SIZE), scenes[:1], SIZE, shape_classifier=classifier)
    with pytest.raises(AttributesError, match="background"):
        score_images(
            torch.rand(1, 3, SIZE, SIZE), [{"objects": []}], SIZE, shape_classifier=classifier
        )
