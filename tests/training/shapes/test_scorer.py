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
from training.shapes.headline import HEADLINE
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


# --- whole-caption figures -----------------------------------------------------------------

# The headline caption drawn at 32 px: the circle in the top half, the square below (the
# scene of `training.shapes.headline` has no boxes to draw).
HEADLINE_SCENE: dict[str, Any] = {
    "background": "gray",
    "relation": "above",
    "objects": [
        {"shape": "circle", "color": "red", "size": "large", "bbox": [4, 2, 14, 14]},
        {"shape": "square", "color": "blue", "size": "large", "bbox": [12, 17, 14, 14]},
    ],
}


def _drawn(scene: dict[str, Any], *pairs: tuple[str, str]) -> dict[str, Any]:
    """The scene with its objects given these (colour, shape) pairs, in place."""
    objects = [
        {**obj, "color": color, "shape": shape}
        for obj, (color, shape) in zip(scene["objects"], pairs, strict=True)
    ]
    return {**scene, "objects": objects}


def test_real_renders_pass_every_caption(
    classifier: ShapeClassifier, scenes: list[dict[str, Any]]
) -> None:
    from training.shapes.scenes import all_captions

    captions = [all_captions(scene)[i % 8] for i, scene in enumerate(scenes)]
    result = score_images(
        _render(scenes), scenes, SIZE, shape_classifier=classifier, captions=captions
    )
    two = result["two_objects"]
    assert result["whole_caption"] == 1.0 and result["one_object"]["whole_caption"] == 1.0
    assert two["whole_caption"] == 1.0 and two["binding"] == 1.0
    assert two["relation_given_found"] == 1.0 and two["num_found"] == two["num_images"] > 40
    assert result["named"]["mean"] == 1.0 and result["ties"] == 0.0
    named, unnamed = (
        result["two_objects_relation_named"],
        result["two_objects_relation_unnamed"],
    )
    assert named["num_images"] > 0 and unnamed["num_images"] > 0
    assert named["num_images"] + unnamed["num_images"] == two["num_images"]
    assert result["objects"]["heldout_pair"]["object"] == 1.0
    assert result["objects"]["heldout_pair"]["count"] > 0
    assert result["one_object"]["mean"] == two["mean"] == 1.0
    assert sum(two["heldout_objects"]) == two["num_images"] and two["heldout_objects"][1] > 0


def test_a_swapped_drawing_fails_binding_and_whole_caption(classifier: ShapeClassifier) -> None:
    # A red square above a blue circle, for "a red circle above a blue square": both colours
    # are where the caption puts them, both shapes are not.
    swapped = _drawn(HEADLINE_SCENE, ("red", "square"), ("blue", "circle"))
    # A blue circle above a red square: the shapes are where the caption puts them.
    other_way = _drawn(HEADLINE_SCENE, ("blue", "circle"), ("red", "square"))
    # The caption drawn right but upside down: the objects are right, the relation is not.
    flipped = {
        **HEADLINE_SCENE,
        "objects": [
            {**HEADLINE_SCENE["objects"][0], "bbox": [4, 17, 14, 14]},
            {**HEADLINE_SCENE["objects"][1], "bbox": [12, 2, 14, 14]},
        ],
    }
    drawings = [HEADLINE_SCENE, swapped, other_way, flipped]
    result = score_images(
        _render(drawings),
        [HEADLINE_SCENE] * 4,
        SIZE,
        shape_classifier=classifier,
        return_details=True,
        captions=[HEADLINE] * 4,
    )
    right, swap, other, upside_down = result["per_image"]
    assert right["whole"] == [True] and right["binding"] == [True] and not right["tie"]
    for checks in (swap, other):
        assert checks["binding"] == [False] and checks["whole"] == [False]
        assert checks["tie"] and checks["relation"] == [False]
        # The per-attribute means still hand out half of the object checks by the halves...
        assert sum(checks["color"]) + sum(checks["shape"]) == 2
        # ...which the named-checks reading does not.
        assert checks["color_strict"] == [False, False]
        assert checks["shape_strict"] == [False, False]
    assert swap["color"] == [True, True] and other["shape"] == [True, True]
    assert upside_down["binding"] == [True] and upside_down["relation"] == [False]
    assert upside_down["whole"] == [False]
    assert result["two_objects"]["binding"] == 0.5
    assert result["two_objects"]["whole_caption"] == 0.25
    assert result["two_objects"]["relation_given_found"] == 0.5
    assert result["ties"] == 0.5
    # Every image has two objects, so the two-object mean is the mean.
    assert result["two_objects"]["mean"] == result["mean"]
    # Per caption object, what was drawn: the swaps draw each shape as the other.
    assert result["shapes"]["two_objects"] == {
        "by_size": {"large": 0.75},
        "drawn_instead": {"circle": {"square": 1}, "square": {"circle": 1}},
    }
    assert swap["shapes"] == [("circle", "large", "square"), ("square", "large", "circle")]
    assert result["one_object"] == {
        "num_images": 0,
        "mean": None,
        "whole_caption": None,
        "named": {"background": None, "color": None, "shape": None},
    }


def test_one_object_figures_name_the_attribute_that_failed(classifier: ShapeClassifier) -> None:
    """The one-object figures keep each named attribute apart: a wrong shape shows as shape."""
    circle = {**HEADLINE_SCENE, "relation": None, "objects": HEADLINE_SCENE["objects"][:1]}
    square = _drawn(circle, ("red", "square"))
    captions = ["a red circle", "a red circle on a gray background", "a red circle"]
    result = score_images(
        _render([circle, circle, square]),
        [circle] * 3,
        SIZE,
        shape_classifier=classifier,
        captions=captions,
    )
    one = result["one_object"]
    assert one["num_images"] == 3 and one["whole_caption"] == pytest.approx(2 / 3)
    assert one["named"] == {"background": 1.0, "color": 1.0, "shape": pytest.approx(2 / 3)}
    # ...and says what was drawn instead, by the caption object's size (all large here)
    shapes = result["shapes"]["one_object"]
    assert shapes == {
        "by_size": {"large": pytest.approx(2 / 3)},
        "drawn_instead": {"circle": {"square": 1}},
    }
    assert result["shapes"]["two_objects"] == {"by_size": {}, "drawn_instead": {}}


def test_whole_caption_checks_only_what_the_caption_names(classifier: ShapeClassifier) -> None:
    # Drawn on black: wrong for a caption naming gray, free for one naming no background.
    on_black = {**HEADLINE_SCENE, "background": "black"}
    # Drawn upside down: wrong for a caption naming the relation, free for one that does not.
    upside_down = {
        **HEADLINE_SCENE,
        "objects": [
            {**HEADLINE_SCENE["objects"][0], "bbox": [4, 17, 14, 14]},
            {**HEADLINE_SCENE["objects"][1], "bbox": [12, 2, 14, 14]},
        ],
    }
    captions = [
        HEADLINE,
        "a red circle above a blue square on a gray background",
        "gray background , a red circle and a blue square",
        HEADLINE,
    ]
    result = score_images(
        _render([on_black, on_black, upside_down, upside_down]),
        [HEADLINE_SCENE] * 4,
        SIZE,
        shape_classifier=classifier,
        return_details=True,
        captions=captions,
    )
    assert [checks["whole"][0] for checks in result["per_image"]] == [True, False, True, False]
    assert result["named"]["counts"] == {"background": 2, "color": 8, "shape": 8, "relation": 3}
    assert result["named"]["background"] == 0.5  # black drawn where gray is named
    assert result["background"] == 0.5  # the per-attribute mean checks it whatever is named
    assert result["two_objects_relation_unnamed"]["num_images"] == 1
    with pytest.raises(AttributesError, match="2 attribute sets but 1 captions"):
        score_images(
            _render([on_black] * 2),
            [HEADLINE_SCENE] * 2,
            SIZE,
            shape_classifier=classifier,
            captions=[HEADLINE],
        )


def test_caption_names_background_and_relation() -> None:
    from training.shapes.figures import caption_names

    assert caption_names(HEADLINE, HEADLINE_SCENE) == {"background": False, "relation": True}
    assert caption_names("gray background , a red circle and a blue square", HEADLINE_SCENE) == {
        "background": True,
        "relation": False,
    }
    assert caption_names(None, HEADLINE_SCENE) == {"background": True, "relation": True}
    one = {**HEADLINE_SCENE, "objects": HEADLINE_SCENE["objects"][:1], "relation": None}
    assert caption_names("a red circle", one) == {"background": False, "relation": False}


def test_a_tie_gives_only_the_credit_both_matchings_agree_on() -> None:
    from training.shapes.scorer import image_checks, tie_alternative

    mask = torch.zeros(4, 4, dtype=torch.bool)
    top = FoundObject(mask, "red", "circle", x=1.0, y=0.0)
    bottom = FoundObject(mask, "red", "circle", x=1.0, y=3.0)
    # Two red circles for "a red circle above a blue circle": one object is surely right,
    # the other has the wrong colour whichever it is.
    scene = _drawn(HEADLINE_SCENE, ("red", "circle"), ("blue", "circle"))
    matched, sure = match_objects(scene["objects"], [bottom, top], "above")
    alternative = tie_alternative(scene["objects"], [bottom, top], matched)
    assert matched == [top, bottom] and not sure and alternative == [bottom, top]
    checks = image_checks(scene, "gray", matched, sure, HEADLINE, alternative)
    assert checks["color_strict"] == [True, False] and checks["shape_strict"] == [True, True]
    assert checks["binding"] == [False] and checks["whole"] == [False]
    sure_match = [top, FoundObject(mask, "blue", "circle", x=1.0, y=3.0)]
    assert tie_alternative(scene["objects"], sure_match, sure_match) is None
