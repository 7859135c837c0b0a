"""Faithfulness of shapes-benchmark images to their captions' attributes.

Implements "Scoring faithfulness" of docs/shapes-benchmark.md. Per image:
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
images whose objects are wrong (`training.shapes.figures`).

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
from training.shapes.figures import ATTRIBUTES, caption_figures, caption_verdicts
from training.shapes.scenes import PALETTE_BACKGROUNDS, PALETTE_OBJECTS, RELATIONS


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
    if relation is None:
        raise ValueError("two expected objects need the caption's relation")
    spatial: list[FoundObject | None] = list(found)
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
    return {**checks, **caption_verdicts(checks, attributes, caption, alternative)}


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
        # each caption object's shape and size, and the shape drawn for it (None: not found)
        checks["shapes"] = [
            (want["shape"], want.get("size"), None if obj is None else obj.shape)
            for want, obj in zip(scene["objects"], matched, strict=True)
        ]
        per_image.append(checks)
    return per_image


def score_in_chunks(
    images: torch.Tensor,
    attributes: Sequence[dict[str, Any]],
    size: int,
    classifier: ShapeClassifier,
    progress: bool = False,
    desc: str = "score",
    chunk: int = 256,
    texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`score_images` over chunks of `chunk` images, summarized together; `texts`: each
    image's caption, for the whole-caption figures."""
    from tqdm import tqdm

    per_image: list[dict[str, Any]] = []
    for start in tqdm(
        range(0, len(images), chunk), desc=desc, unit="chunk", disable=not progress, leave=False
    ):
        result = score_images(
            images[start : start + chunk],
            attributes[start : start + chunk],
            size,
            shape_classifier=classifier,
            return_details=True,
            captions=None if texts is None else texts[start : start + chunk],
        )
        per_image.extend(result["per_image"])
    return summarize(per_image)
