"""Does the drawing change as the caption does? `python -m benchmarks.flip_probe [--model DIR]`.

A model can score well on per-attribute checks while drawing the same layout whatever the
relation says, or the same colour-shape pairs whatever the binding says. For N fresh
two-object scenes of a split's distribution (`sources.fresh_scenes`, seed --seed; two colours
and two shapes, so that both edits change the scene), each scene's caption (one that names
the relation) is drawn beside two twins with the same z:

  flipped   the relation reversed ("a red circle left of ..." -> "... right of ..."):
            the drawing should swap the objects' places
  swapped   the two colours exchanged ("a red circle ... a blue square" -> "a blue circle
            ... a red square"): the drawing should swap which colour goes on which shape

The edits are those of `training.experiments.negatives` (the swap negatives of training). The
scorer decides: a flip is followed when the original drawing passes the original caption's
relation and the flipped drawing passes the flipped caption's; a swap is followed when the original
drawing passes binding (both objects found, each colour on its own shape) and the swapped
drawing passes the swapped caption's binding. Also printed: each side alone, whole-caption
accuracy of each drawing, and the mean absolute pixel difference between the original and
each twin (0-255), a model that ignores the edit drawing nearly the same pixels.

Last, the README's headline caption, "a red circle above a blue square", with z seeds
0..15 (as `pipeline(caption, seed=s)`): how many of the 16 images pass every check it names
(both colours, both shapes, the relation; it names no background).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.shapes.headline import generate_images, headline_count


class ProbeError(ValueError):
    """Bad arguments for the probe, explained for the user."""


def flipped_scene(attributes: dict[str, Any]) -> dict[str, Any]:
    """The scene with its relation reversed (the objects keep their colours and shapes)."""
    from training.shapes.scenes import INVERSE_RELATION

    return {**attributes, "relation": INVERSE_RELATION[attributes["relation"]]}


def swapped_scene(attributes: dict[str, Any]) -> dict[str, Any]:
    """The scene with its two objects' colours exchanged."""
    first, second = attributes["objects"]
    return {
        **attributes,
        "objects": [{**first, "color": second["color"]}, {**second, "color": first["color"]}],
    }


def twins(caption: str, attributes: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{"original", "flipped", "swapped"}: (caption, the scene it describes); {} when an
    edit does not give a caption of the edited scene (same colours, no relation named)."""
    from training.experiments.negatives import colours_exchanged, relation_flipped
    from training.shapes.scenes import all_captions

    edits = {
        "flipped": (relation_flipped(caption), flipped_scene(attributes)),
        "swapped": (colours_exchanged(caption), swapped_scene(attributes)),
    }
    # The text edit and the scene edit must agree: the edited caption is one the benchmark's
    # own templates give for the edited scene.
    if any(text is None or text not in all_captions(scene) for text, scene in edits.values()):
        return {}
    return {"original": (caption, attributes), **edits}  # type: ignore[dict-item]


def probe_scenes(
    num: int, split: str, seed: int, size: int
) -> list[dict[str, tuple[str, dict[str, Any]]]]:
    """`num` fresh two-object scenes of `split` with two colours and two shapes, each with
    its twins; the caption drawn (with `seed` and the image id) among the scene's captions
    naming the relation. (With one shape, "a red circle left of a blue circle" and its
    colour swap name the same colour-shape pairs: the swap would test the relation.)"""
    from training.shapes.scenes import all_captions
    from training.shapes.sources import fresh_scenes

    chosen: list[dict[str, tuple[str, dict[str, Any]]]] = []
    pool = max(2 * num, 16)
    while len(chosen) < num:
        chosen.clear()
        for image_id, scene, _ in fresh_scenes(split, pool, size, seed, objects=2):
            first, second = scene["objects"]
            if first["shape"] == second["shape"]:
                continue
            rng = random.Random(f"flip-probe/{seed}/{image_id}")
            captions = [c for c in all_captions(scene) if twins(c, scene)]
            if captions:
                chosen.append(twins(rng.choice(captions), scene))
            if len(chosen) == num:
                break
        pool *= 2
    return chosen


def _rate(values: Sequence[bool]) -> float:
    return sum(values) / len(values)


def _both(first: Sequence[bool], second: Sequence[bool]) -> float:
    return _rate([a and b for a, b in zip(first, second, strict=True)])


def probe(
    pipeline: Any,
    classifier: Any,
    num: int = 200,
    split: str = "val",
    seed: int = 1,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The flip and swap figures over `num` scenes and the headline count (see the module)."""
    from training.shapes.scorer import score_images

    if num < 1:
        raise ProbeError(f"--num must be >= 1, got {num}")
    scenes = probe_scenes(num, split, seed, pipeline.resolution)
    seeds = [seed * 1_000_003 + i for i in range(num)]  # the same z for a scene's twins
    images, checks = {}, {}
    for kind in ("original", "flipped", "swapped"):
        captions = [scene[kind][0] for scene in scenes]
        images[kind] = generate_images(pipeline, captions, seeds, batch_size)
        checks[kind] = score_images(
            images[kind],
            [scene[kind][1] for scene in scenes],
            pipeline.resolution,
            shape_classifier=classifier,
            return_details=True,
            captions=captions,
        )["per_image"]
    relation = {kind: [c["relation"][0] for c in checks[kind]] for kind in checks}
    binding = {kind: [c["binding"][0] for c in checks[kind]] for kind in checks}
    whole = {kind: _rate([c["whole"][0] for c in checks[kind]]) for kind in checks}
    difference = {  # mean |original - twin| over every pixel and channel, 0-255
        kind: (images["original"].float() - images[kind].float()).abs().mean().item()
        for kind in ("flipped", "swapped")
    }
    return {
        "model_id": pipeline.model_id,
        "split": split,
        "seed": seed,
        "num_scenes": num,
        "relation_flip": {
            "follows": _both(relation["original"], relation["flipped"]),
            "original_relation": _rate(relation["original"]),
            "flipped_relation": _rate(relation["flipped"]),
            "flipped_whole_caption": whole["flipped"],
            "pixel_difference": difference["flipped"],
        },
        "colour_swap": {
            "follows": _both(binding["original"], binding["swapped"]),
            "original_binding": _rate(binding["original"]),
            "swapped_binding": _rate(binding["swapped"]),
            "swapped_whole_caption": whole["swapped"],
            "pixel_difference": difference["swapped"],
        },
        "original_whole_caption": whole["original"],
        "headline": headline_count(pipeline, classifier),
    }


def format_report(result: dict[str, Any]) -> str:
    flip, swap, head = result["relation_flip"], result["colour_swap"], result["headline"]
    n = len(head["seeds"])
    return "\n".join(
        [
            f"flip probe: {result['model_id']}, {result['num_scenes']} fresh two-object "
            f"{result['split']}-like scenes (seed {result['seed']}), same z per twin",
            f"original drawings: whole caption {result['original_whole_caption']:.3f}",
            f"relation flipped: follows {flip['follows']:.3f} (original relation "
            f"{flip['original_relation']:.3f}, flipped relation {flip['flipped_relation']:.3f},"
            f" flipped whole caption {flip['flipped_whole_caption']:.3f}); mean pixel "
            f"difference {flip['pixel_difference']:.1f} of 255",
            f"colours swapped: follows {swap['follows']:.3f} (original binding "
            f"{swap['original_binding']:.3f}, swapped binding {swap['swapped_binding']:.3f},"
            f" swapped whole caption {swap['swapped_whole_caption']:.3f}); mean pixel "
            f"difference {swap['pixel_difference']:.1f} of 255",
            f'headline "{head["caption"]}": right in {head["right"]} of {n} seeds '
            f"(binding {head['binding']}, relation {head['relation']}; seeds "
            f"{head['seeds'][0]}..{head['seeds'][-1]})",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.flip_probe", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", default=None, help="artifact folder (default: the bundled model)")
    p.add_argument("--num", type=int, default=200, help="two-object scenes (default 200)")
    p.add_argument("--split", choices=("val", "test_heldout"), default="val")
    p.add_argument("--seed", type=int, default=1, help="the fresh scenes' seed and the z seeds")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", type=Path, help="a benchmark root whose classifier cache to use")
    p.add_argument("--cache-dir", type=Path, help="shape classifier cache")
    p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    from models import XMCGANPipeline
    from models.artifacts import ArtifactError
    from training.shapes.classifier import ShapeClassifierError, load_or_train

    try:
        pipeline = XMCGANPipeline.from_pretrained(args.model, device=args.device)
        classifier = load_or_train(
            pipeline.resolution, cache_dir=args.cache_dir, data_root=args.data
        )
        result = probe(pipeline, classifier, args.num, args.split, args.seed, args.batch_size)
    except (ProbeError, ArtifactError, ShapeClassifierError, OSError) as error:
        print(f"flip_probe: error: {error}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
