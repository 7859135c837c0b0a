"""The whole-caption figures of faithfulness, and the table `xmc-eval faithfulness` prints.

The scorer (`training.shapes.scorer`) checks each image attribute by attribute; the means of
those checks give partial credit. These figures ask whether the image is the caption: every
check the caption names at once (whole caption), both objects with their own colour and
shape (binding), the relation where both objects are found, the one- and two-object images
apart, and a mean over the named checks with no credit from a tie. Their keys are listed in
docs/shapes-benchmark.md ("Scoring").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.shapes.scenes import HELDOUT_PAIRS

ATTRIBUTES: tuple[str, ...] = ("background", "color", "shape", "relation")
# A caption names the relation when it holds one of these words (all four relations and
# their inverses are spelled with them).
RELATION_WORDS: frozenset[str] = frozenset({"left", "right", "above", "below"})


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


def caption_verdicts(
    checks: dict[str, list[bool]],
    attributes: dict[str, Any],
    caption: str | None,
    alternative: list[Any] | None,
) -> dict[str, Any]:
    """The whole-caption verdicts of one image from its attribute checks (see image_checks)."""
    expected = attributes["objects"]
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
                checks[name], alternative or [None] * len(expected), expected, strict=True
            )
        ]
        for name in ("color", "shape")
    }
    return {
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


def shape_errors(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Shape accuracy of the caption objects by their size, and what was drawn instead: for
    each shape a caption names, {drawn shape or "none": count} over its misses."""
    by_size: dict[str, list[bool]] = {}
    drawn_instead: dict[str, dict[str, int]] = {}
    for checks in per_image:
        for want, size, drawn in checks["shapes"]:
            by_size.setdefault(size or "unknown", []).append(drawn == want)
            if drawn != want:
                misses = drawn_instead.setdefault(want, {})
                other = drawn or "none"
                misses[other] = misses.get(other, 0) + 1
    return {
        "by_size": {size: _rate(values) for size, values in sorted(by_size.items())},
        "drawn_instead": drawn_instead,
    }


def _named_object_checks(per_image: list[dict[str, Any]]) -> tuple[list, list, list]:
    """The background checks of captions that name it, and every colour and shape check with
    no tie-breaker's credit (see `image_checks`)."""
    background = [c["background"][0] for c in per_image if c["named"]["background"]]
    color = [passed for c in per_image for passed in c["color_strict"]]
    shape = [passed for c in per_image for passed in c["shape_strict"]]
    return background, color, shape


def caption_figures(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole-caption figures of a set of images (see `image_checks`)."""
    one = [checks for checks in per_image if len(checks["color"]) == 1]
    two = [checks for checks in per_image if len(checks["color"]) == 2]
    named_background, strict_color, strict_shape = _named_object_checks(per_image)
    named_relation = [c["relation"][0] for c in two if c["named"]["relation"]]
    # The honest mean: only the checks the caption names (colour and shape always, the rest
    # when named), and no colour or shape credit that a tie-breaker hands out.
    named_checks = named_background + strict_color + strict_shape + named_relation
    return {
        "whole_caption": _rate([checks["whole"][0] for checks in per_image]),
        "one_object": {
            "num_images": len(one),
            "mean": _attribute_mean(one),
            "whole_caption": _rate([checks["whole"][0] for checks in one]),
            # each attribute a one-object caption names, as in "named" below
            "named": {
                name: _rate(checks)
                for name, checks in zip(
                    ("background", "color", "shape"), _named_object_checks(one), strict=True
                )
            },
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
        # The shape checks by the object's size, and what was drawn instead of each shape.
        "shapes": {"one_object": shape_errors(one), "two_objects": shape_errors(two)},
        # Shares of images with more objects drawn than the caption names (not counted by
        # any check) and of two-object images cut out of one blob by the relation's halves.
        "extra_objects": _rate([checks["extra_objects"] > 0 for checks in per_image]),
        "halves_split": _rate([checks["halves_split"] for checks in two]),
    }


# Width of the table's first column.
LABEL_WIDTH = 26
# (label, path into the scores) of the rows below the per-attribute means.
CAPTION_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mean: 1-object images", ("one_object", "mean")),
    ("  2-object images", ("two_objects", "mean")),
    ("named checks, no tie credit", ()),
    ("  background (if named)", ("named", "background")),
    ("  color", ("named", "color")),
    ("  shape", ("named", "shape")),
    ("  relation (if named)", ("named", "relation")),
    ("  mean", ("named", "mean")),
    ("whole caption", ("whole_caption",)),
    ("  1 object", ("one_object", "whole_caption")),
    ("    its background (named)", ("one_object", "named", "background")),
    ("    its color", ("one_object", "named", "color")),
    ("    its shape", ("one_object", "named", "shape")),
    ("      small objects", ("shapes", "one_object", "by_size", "small")),
    ("      large objects", ("shapes", "one_object", "by_size", "large")),
    ("  2 objects", ("two_objects", "whole_caption")),
    ("  2, relation named", ("two_objects_relation_named", "whole_caption")),
    ("  2, relation unnamed", ("two_objects_relation_unnamed", "whole_caption")),
    ("2 objects: binding", ("two_objects", "binding")),
    ("  relation | both found", ("two_objects", "relation_given_found")),
    ("  ties (share)", ("ties",)),
    ("  shapes: small objects", ("shapes", "two_objects", "by_size", "small")),
    ("    large objects", ("shapes", "two_objects", "by_size", "large")),
    ("objects right: held-out", ("objects", "heldout_pair", "object")),
    ("  seen pairs", ("objects", "seen_pair", "object")),
)


def _cells(values: list[Any], width: int) -> str:
    return "".join(("-" if v is None else f"{v:.3f}").rjust(width) for v in values)


def format_table(result: dict[str, Any]) -> str:
    columns = [key for key in ("generated", "real", "untrained") if key in result]
    heads = {
        "generated": result["model_id"],
        "real": "real (ceiling)",
        "untrained": "untrained (floor)",
    }
    width = max(len(heads[key]) for key in columns) + 2
    lines = ["attribute".ljust(LABEL_WIDTH) + "".join(heads[key].rjust(width) for key in columns)]
    for attribute in (*ATTRIBUTES, "mean"):
        values = [result[key][attribute] for key in columns]
        lines.append(attribute.ljust(LABEL_WIDTH) + _cells(values, width))
    lines += _caption_rows(result, columns, width)
    counts = result["generated"]["counts"]
    where = result["split"]
    if result.get("fresh_seed") is not None:
        where = f"fresh {where}-like scenes of seed {result['fresh_seed']}"
    if result.get("objects"):
        where += f", {result['objects']}-object only"
    lines.append(
        f"({result['num_images']} images of {where}: "
        + ", ".join(f"{counts[name]} {name}" for name in ATTRIBUTES)
        + " checks)"
    )
    return "\n".join(lines)


def _caption_rows(result: dict[str, Any], columns: Sequence[str], width: int) -> list[str]:
    """The whole-caption figures, one row each; "-" where a row has no image."""
    if "whole_caption" not in result[columns[0]]:
        return []
    lines = []
    for label, path in CAPTION_ROWS:
        if not path:
            lines.append(label)
            continue
        values = []
        for key in columns:
            value: Any = result[key]
            for part in path:  # a size no object had: "-"
                value = value.get(part) if isinstance(value, dict) else None
            values.append(value)
        lines.append(label.ljust(LABEL_WIDTH) + _cells(values, width))
    two = result[columns[0]]["two_objects"]
    lines.append(
        f"(two objects: {two['num_images']} images, {two['num_found']} with both found; "
        "whole caption: every check the caption names passes)"
    )
    for objects, label in (("one_object", "one object"), ("two_objects", "two objects")):
        misses = result[columns[0]]["shapes"][objects]["drawn_instead"]
        drawn = [
            f"{want} as {other} {count}"
            for want, others in sorted(misses.items())
            for other, count in sorted(others.items(), key=lambda item: -item[1])
        ]
        if drawn:
            lines.append(f"({label}, shapes drawn wrong: {', '.join(drawn)}; none = not found)")
    return lines
