"""Faithfulness of shapes-benchmark images to their captions' attributes.

Implements "Scoring faithfulness" of `/work/shared/specs/shapes-benchmark.md`. Per image:
- background: the nearest background colour to the median of the outer ring (0.03 * S);
- objects: the foreground (pixels far from that median) split into 8-connected
  components, the largest ones taken as the objects; when two objects are expected but
  one component is found (touching or merged shapes), the foreground is split into the
  two halves that the relation names;
- colour: the nearest object colour to the mean of the object's pixels;
- shape: `training.shapes.classifier` on the object's silhouette;
- relation: the order of the two objects' centroids along the relation's axis.

Beside the per-attribute means (partial credit per check), whole-caption figures: an image
passes its caption when every check the caption names passes (each object's colour and
shape, the relation and the background only if the caption names them); binding asks that
both objects are found with the caption's colour-shape pairs (a red square and a blue
circle drawn for "a red circle above a blue square" fail it, though they pass both colour
checks); the relation is also reported given binding, so a relation score cannot come from
images whose objects are wrong.

Found objects are matched to the caption's by appearance (the matching with more colour
and shape agreements), so the relation check asks "is the red circle left of the blue
square", not "is the left thing left of the right thing". When both matchings agree
equally the relation cannot be read and counts as failed; colour and shape are then
scored with the matching that the relation's halves suggest. A missing object fails its
colour and shape checks (and the relation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from training.shapes import pixels as seg
from training.shapes.classifier import ShapeClassifier, load_or_train, one_thread
from training.shapes.scenes import HELDOUT_PAIRS, PALETTE_BACKGROUNDS, PALETTE_OBJECTS, RELATIONS

ATTRIBUTES: tuple[str, ...] = ("background", "color", "shape", "relation")
# A caption names the relation when it holds one of these words (all four relations and
# their inverses are spelled with them).
RELATION_WORDS: frozenset[str] = frozenset({"left", "right", "above", "below"})


class AttributesError(ValueError):
    """Scene attributes that the scorer cannot read."""


@dataclass(frozen=True)
class FoundObject:
    """An object found in an image: its pixels (S, S) bool, colour, shape and centroid."""

    mask: torch.Tensor
    color: str
    shape: str
    x: float
    y: float

    def matches(self, expected: dict[str, Any]) -> int:
        return int(self.color == expected["color"]) + int(self.shape == expected["shape"])


def _check_attributes(attributes: dict[str, Any], index: int) -> None:
    problem = None
    if not isinstance(attributes, dict) or attributes.get("background") not in PALETTE_BACKGROUNDS:
        problem = "needs a 'background' among " + ", ".join(PALETTE_BACKGROUNDS)
    elif not isinstance(attributes.get("objects"), list) or len(attributes["objects"]) not in (
        1,
        2,
    ):
        problem = "needs 1 or 2 'objects'"
    elif any(obj.get("color") not in PALETTE_OBJECTS for obj in attributes["objects"]):
        problem = "has an object colour outside the palette"
    elif (len(attributes["objects"]) == 2) != (attributes.get("relation") in RELATIONS):
        problem = "needs a 'relation' among " + ", ".join(RELATIONS) + " exactly for 2 objects"
    if problem:
        raise AttributesError(f"attributes of image {index} {problem}: {attributes!r}")


def caption_names(caption: str | None, attributes: dict[str, Any]) -> dict[str, bool]:
    """Which optional checks a caption names: its background, its relation (two objects).

    Every template names each object's colour and shape; the background and the relation
    are named by some templates only ("{bg} background , a X and a Y" gives no relation).
    Without a caption everything counts as named (the strict reading)."""
    if caption is None:
        return {"background": True, "relation": len(attributes["objects"]) == 2}
    words = set(caption.lower().split())
    return {
        "background": attributes["background"] in words,
        "relation": len(attributes["objects"]) == 2 and bool(words & RELATION_WORDS),
    }


def relation_halves(relation: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, S) bool masks of the half holding the first object and of the other half."""
    first = torch.zeros(size, size, dtype=torch.bool)
    half = size // 2
    if relation == "left of":
        first[:, :half] = True
    elif relation == "right of":
        first[:, half:] = True
    elif relation == "above":
        first[:half, :] = True
    else:  # below
        first[half:, :] = True
    return first, ~first


def relation_holds(relation: str, first: FoundObject, second: FoundObject) -> bool:
    """Image y grows downwards, so "above" means a smaller y."""
    if relation == "left of":
        return first.x < second.x
    if relation == "right of":
        return first.x > second.x
    if relation == "above":
        return first.y < second.y
    return first.y > second.y


def object_masks(
    foreground: torch.Tensor, labels: torch.Tensor, attributes: dict[str, Any]
) -> list[torch.Tensor]:
    """Pixels (S, S) of up to as many objects as the caption names, largest first."""
    return found_components(foreground, labels, attributes)[0]


def found_components(
    foreground: torch.Tensor, labels: torch.Tensor, attributes: dict[str, Any]
) -> tuple[list[torch.Tensor], int, bool]:
    """(object masks as `object_masks`, components beyond those the caption names, whether
    two objects had to be cut out of one component by the relation's halves)."""
    size = foreground.shape[-1]
    wanted = len(attributes["objects"])
    found = seg.components(labels, seg.min_object_area(size))
    if len(found) >= wanted or wanted == 1:
        return found[:wanted], max(0, len(found) - wanted), False
    # Two objects expected, at most one component: split by the relation's halves.
    everything = torch.stack(found).any(dim=0) if found else torch.zeros_like(foreground)
    halves = relation_halves(attributes["relation"], size)
    masks = [
        everything & half
        for half in halves
        if (everything & half).sum() >= seg.min_object_area(size)
    ]
    return masks, 0, len(masks) == 2


def match_objects(
    expected: list[dict[str, Any]], found: list[FoundObject], relation: str | None
) -> tuple[list[FoundObject | None], bool]:
    """Found objects in the caption's order (None = missing), and whether the match is sure."""
    if len(expected) == 1:
        return [found[0] if found else None], True
    if not found:
        return [None, None], False
    # The order the relation's halves suggest: the first object where the relation puts it.
    spatial = list(found)
    if len(found) == 2 and not relation_holds(relation, found[0], found[1]):
        spatial.reverse()
    if len(found) == 1:
        (only,) = found
        first_half, _ = relation_halves(relation, only.mask.shape[-1])
        in_first = (only.mask & first_half).sum() * 2 >= only.mask.sum()
        score_first, score_second = only.matches(expected[0]), only.matches(expected[1])
        if score_first > score_second or (score_first == score_second and in_first):
            return [only, None], False
        return [None, only], False
    keep = found[0].matches(expected[0]) + found[1].matches(expected[1])
    swap = found[1].matches(expected[0]) + found[0].matches(expected[1])
    if keep == swap:
        return spatial, False
    return (list(found) if keep > swap else [found[1], found[0]]), True


def tie_alternative(
    expected: list[dict[str, Any]], found: list[FoundObject], matched: list[FoundObject | None]
) -> list[FoundObject | None] | None:
    """The other matching of two caption objects when appearance cannot choose between the
    two (equal agreements), else None. With a tie, which found object is "the red circle"
    is the tie-breaker's choice, not the drawing's."""
    if len(expected) != 2 or not found or len(found) > 2:
        return None
    if len(found) == 1:
        (only,) = found
        tied = only.matches(expected[0]) == only.matches(expected[1])
    else:
        keep = found[0].matches(expected[0]) + found[1].matches(expected[1])
        swap = found[1].matches(expected[0]) + found[0].matches(expected[1])
        tied = keep == swap
    return [matched[1], matched[0]] if tied else None


def image_checks(
    attributes: dict[str, Any],
    background: str,
    matched: list[FoundObject | None],
    sure: bool,
    caption: str | None = None,
    alternative: list[FoundObject | None] | None = None,
) -> dict[str, Any]:
    """Pass/fail of every attribute check of one image, and its whole-caption verdicts.

    The attribute checks ("background", "color", "shape", "relation": lists of bools) are
    those the per-attribute means count. Beside them: "binding" ([bool], two objects: each
    caption object found with its own colour and shape), "whole" ([bool]: every check the
    caption names passes), "named" (which optional checks the caption names), "heldout"
    (per caption object: is it a held-out colour-shape pair), "tie" (appearance could not
    match the objects to the caption's), "color_strict" and
    "shape_strict" (a check passes only if it passes under `alternative` too, the other
    matching of a tie: a drawing of a red square and a blue circle for "a red circle above
    a blue square" passes both colours by the halves' matching, both shapes by the other,
    and neither strictly)."""
    expected = attributes["objects"]
    checks: dict[str, list[bool]] = {
        "background": [background == attributes["background"]],
        "color": [
            obj is not None and obj.color == want["color"]
            for obj, want in zip(matched, expected, strict=True)
        ],
        "shape": [
            obj is not None and obj.shape == want["shape"]
            for obj, want in zip(matched, expected, strict=True)
        ],
        "relation": [],
    }
    if len(expected) == 2:
        first, second = matched
        checks["relation"].append(
            sure
            and first is not None
            and second is not None
            and relation_holds(attributes["relation"], first, second)
        )
    named = caption_names(caption, attributes)
    # Binding needs both objects right at once, so a drawing that swaps which colour goes
    # on which shape fails it even when the tie-breaking matching passes both colours.
    objects_right = all(checks["color"]) and all(checks["shape"])
    whole = (
        objects_right
        and (checks["background"][0] or not named["background"])
        and (not named["relation"] or all(checks["relation"]))
    )
    strict = {
        name: [
            passed
            and (alternative is None or (other is not None and getattr(other, name) == want[name]))
            for passed, other, want in zip(
                checks[name], alternative or matched, expected, strict=True
            )
        ]
        for name in ("color", "shape")
    }
    return {
        **checks,
        "tie": alternative is not None,
        "color_strict": strict["color"],
        "shape_strict": strict["shape"],
        "binding": [objects_right] if len(expected) == 2 else [],
        "whole": [whole],
        "named": named,
        "heldout": [(want["color"], want["shape"]) in HELDOUT_PAIRS for want in expected],
    }


def _rate(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _attribute_mean(per_image: list[dict[str, Any]]) -> float | None:
    """Today's mean over all attribute checks, of a subset of the images."""
    return _rate([passed for checks in per_image for name in ATTRIBUTES for passed in checks[name]])


def _two_object_figures(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Whole-caption, binding and relation-given-binding figures of two-object images."""
    bound = [checks for checks in per_image if checks["binding"][0]]
    return {
        "num_images": len(per_image),
        "mean": _attribute_mean(per_image),
        # How many of the caption's two objects are of a held-out pair: 0, 1, 2.
        "heldout_objects": [sum(sum(c["heldout"]) == k for c in per_image) for k in range(3)],
        "whole_caption": _rate([checks["whole"][0] for checks in per_image]),
        "binding": _rate([checks["binding"][0] for checks in per_image]),
        "both_colors": _rate([all(checks["color"]) for checks in per_image]),
        "both_shapes": _rate([all(checks["shape"]) for checks in per_image]),
        "relation": _rate([checks["relation"][0] for checks in per_image]),
        # The relation only where both objects are found with the right colour and shape:
        # what the drawing says about placement, apart from what it says about objects.
        "relation_given_found": _rate([checks["relation"][0] for checks in bound]),
        "num_found": len(bound),
    }


def _object_figures(per_image: list[dict[str, Any]], heldout: bool) -> dict[str, Any]:
    """Colour, shape and both at once over the caption objects of held-out (or seen) pairs."""
    rows = [
        (color, shape)
        for checks in per_image
        for color, shape, pair in zip(
            checks["color"], checks["shape"], checks["heldout"], strict=True
        )
        if pair == heldout
    ]
    return {
        "count": len(rows),
        "color": _rate([color for color, _ in rows]),
        "shape": _rate([shape for _, shape in rows]),
        "object": _rate([color and shape for color, shape in rows]),
    }


def caption_figures(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole-caption figures of a set of images (see `image_checks`)."""
    one = [checks for checks in per_image if len(checks["color"]) == 1]
    two = [checks for checks in per_image if len(checks["color"]) == 2]
    named_background = [c["background"][0] for c in per_image if c["named"]["background"]]
    named_relation = [c["relation"][0] for c in two if c["named"]["relation"]]
    strict_color = [passed for c in per_image for passed in c["color_strict"]]
    strict_shape = [passed for c in per_image for passed in c["shape_strict"]]
    # The honest mean: only the checks the caption names (colour and shape always, the rest
    # when named), and no colour or shape credit that a tie-breaker hands out.
    named_checks = named_background + strict_color + strict_shape + named_relation
    return {
        "whole_caption": _rate([checks["whole"][0] for checks in per_image]),
        "one_object": {
            "num_images": len(one),
            "mean": _attribute_mean(one),
            "whole_caption": _rate([checks["whole"][0] for checks in one]),
        },
        "two_objects": _two_object_figures(two),
        "two_objects_relation_named": _two_object_figures(
            [c for c in two if c["named"]["relation"]]
        ),
        "two_objects_relation_unnamed": _two_object_figures(
            [c for c in two if not c["named"]["relation"]]
        ),
        "named": {
            "background": _rate(named_background),
            "color": _rate(strict_color),
            "shape": _rate(strict_shape),
            "relation": _rate(named_relation),
            "mean": _rate(named_checks),
            "counts": {
                "background": len(named_background),
                "color": len(strict_color),
                "shape": len(strict_shape),
                "relation": len(named_relation),
            },
        },
        # Two-object images whose objects appearance could not match to the caption's.
        "ties": _rate([c["tie"] for c in two]),
        "objects": {
            "heldout_pair": _object_figures(per_image, heldout=True),
            "seen_pair": _object_figures(per_image, heldout=False),
        },
        # Shares of images with more objects drawn than the caption names (not counted by
        # any check) and of two-object images cut out of one blob by the relation's halves.
        "extra_objects": _rate([checks["extra_objects"] > 0 for checks in per_image]),
        "halves_split": _rate([checks["halves_split"] for checks in two]),
    }


def summarize(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-attribute accuracy, the mean over all checks, the number of checks, and (for
    the scorer's own per-image records) the whole-caption figures of `caption_figures`."""
    counts = {name: sum(len(checks[name]) for checks in per_image) for name in ATTRIBUTES}
    passed = {name: sum(sum(checks[name]) for checks in per_image) for name in ATTRIBUTES}
    total = sum(counts.values())
    result: dict[str, Any] = {
        name: (passed[name] / counts[name] if counts[name] else None) for name in ATTRIBUTES
    }
    result["mean"] = sum(passed.values()) / total if total else None
    result["counts"] = counts
    result["num_images"] = len(per_image)
    if per_image and all("whole" in checks for checks in per_image):
        result.update(caption_figures(per_image))
    return result


def score_images(
    images: Sequence[Image.Image] | torch.Tensor,
    attributes: Sequence[dict[str, Any]],
    size: int,
    shape_classifier: ShapeClassifier | None = None,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    return_details: bool = False,
    captions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score S x S images against their scenes' attributes.

    captions: the caption each image was drawn from, so that the whole-caption figures
    check only what it names (without them every attribute counts as named).

    images: PIL images or a (B, 3, S, S) tensor in [0, 1] (uint8 in [0, 255] also accepted).
    Returns {"background", "color", "shape", "relation": accuracy or None, "mean": accuracy
    over all checks, "counts": checks per attribute, "num_images"}; with return_details,
    also "per_image" (each image's checks). Without a classifier, the cached one for S is
    used (trained first if needed, see `shape_classifier.load_or_train`); raises
    ShapeClassifierError if it misses the spec's 98% gate.
    """
    pixels = seg.as_float_images(images, size)  # (B, 3, S, S)
    if len(attributes) != pixels.shape[0]:
        raise AttributesError(f"got {pixels.shape[0]} images but {len(attributes)} attribute sets")
    for index, scene in enumerate(attributes):
        _check_attributes(scene, index)
    if captions is not None and len(captions) != len(attributes):
        raise AttributesError(f"got {len(attributes)} attribute sets but {len(captions)} captions")
    classifier = shape_classifier or load_or_train(size, cache_dir=cache_dir, data_root=data_root)
    classifier.check_gate()
    with one_thread():  # many small ops: one thread is faster, and gives the same result
        per_image = _score(pixels, attributes, classifier, captions)
    result = summarize(per_image)
    if return_details:
        result["per_image"] = per_image
    return result


def _score(
    pixels: torch.Tensor,
    attributes: Sequence[dict[str, Any]],
    classifier: ShapeClassifier,
    captions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """(B, 3, S, S) float images in [0, 255] -> every image's checks."""
    backgrounds = seg.background_colors(pixels)  # (B, 3)
    background_names = seg.nearest_color(backgrounds, PALETTE_BACKGROUNDS)
    distance = seg.distance_from_background(pixels, backgrounds)  # (B, S, S)
    foreground = seg.foreground_masks(distance)  # (B, S, S)
    labels = seg.label_components(foreground)  # (B, S, S)

    components = [
        found_components(foreground[i], labels[i], scene) for i, scene in enumerate(attributes)
    ]
    masks = [image_masks for image_masks, _, _ in components]
    flat = [(i, mask) for i, image_masks in enumerate(masks) for mask in image_masks]
    crops = [seg.object_crop(distance[i], mask, foreground[i] & ~mask) for i, mask in flat]
    shapes = classifier.predict(torch.stack(crops)) if crops else []
    colors = seg.nearest_color(
        torch.stack([seg.mean_color(pixels[i], mask) for i, mask in flat])
        if flat
        else torch.zeros(0, 3),
        PALETTE_OBJECTS,
    )
    found: list[list[FoundObject]] = [[] for _ in attributes]
    for (i, mask), shape, color in zip(flat, shapes, colors, strict=True):
        found[i].append(FoundObject(mask, color, shape, *seg.centroid(mask)))

    per_image = []
    texts = captions if captions is not None else [None] * len(attributes)
    for scene, background, objects, (_, extra, split), caption in zip(
        attributes, background_names, found, components, texts, strict=True
    ):
        matched, sure = match_objects(scene["objects"], objects, scene.get("relation"))
        alternative = tie_alternative(scene["objects"], objects, matched)
        checks = image_checks(scene, background, matched, sure, caption, alternative)
        checks["extra_objects"], checks["halves_split"] = extra, split
        per_image.append(checks)
    return per_image
