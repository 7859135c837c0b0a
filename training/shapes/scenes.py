"""The shapes captions benchmark (spec v1, docs/shapes-benchmark.md).

An offline stand-in for COCO captions whose every image can be scored exactly against
its caption: one or two coloured shapes on a plain background, five templated captions
per image, a held-out split of unseen colour-shape pairs. Written in the COCO captions
layout (`ROOT/annotations/captions_{split}.json`, `ROOT/{split}/{image_id:012d}.png`) so
that `training.data.CocoCaptions` reads it like COCO.

Every image draws from its own `random.Random` seeded by (seed, split, index), so the
output is byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SPEC_VERSION = "shapes-benchmark v1"

PALETTE_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "gray": (128, 128, 128),
    "white": (235, 235, 235),
}
PALETTE_OBJECTS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (235, 215, 40),
    "green": (50, 170, 70),
    "cyan": (40, 200, 210),
    "blue": (45, 85, 215),
    "purple": (145, 60, 190),
    "pink": (240, 120, 180),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Bounding-box side as a fraction of the canvas side S.
SIZES: dict[str, float] = {"small": 0.25, "large": 0.45}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}
# (colour, shape) pairs never seen in train/val; every test_heldout scene has one.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("blue", "circle"), ("green", "square"), ("purple", "triangle")}
)
CANVAS_SIZES: tuple[int, ...] = (32, 64, 128, 256)
MARGIN_FRACTION = 0.05
SUPERSAMPLE = 4
SPLITS: tuple[str, ...] = ("train", "val", "test_heldout")
# Image ids are unique across splits: split k numbers its images from k * 10**7 + 1.
_ID_OFFSET = {"train": 0, "val": 10_000_000, "test_heldout": 20_000_000}
_MAX_PER_SPLIT = 10_000_000 - 1

# The spec's five templates come first; a scene's five captions are five different
# templates drawn from each list, so the spec's wording is always well represented.
ONE_OBJECT_TEMPLATES: tuple[str, ...] = (
    "a {size} {color} {shape} on a {background} background",
    "there is a {color} {shape}",
    "{background} background with a {size} {color} {shape}",
    "a picture of a {color} {shape} on {background}",
    "one {size} {color} {shape}",
    "a {color} {shape}",
    "a single {size} {color} {shape} on {background}",
    "a {color} {shape} on a {background} background",
)
TWO_OBJECT_TEMPLATES: tuple[str, ...] = (
    "a {color1} {shape1} {rel} a {color2} {shape2}",
    "a {size1} {color1} {shape1} {rel} a {size2} {color2} {shape2} on a {background} background",
    "a {color2} {shape2} {rel_inv} a {color1} {shape1}",
    "{background} background , a {color1} {shape1} and a {color2} {shape2}",
    "there is a {color1} {shape1} {rel} a {color2} {shape2}",
    "a {size1} {color1} {shape1} {rel} a {size2} {color2} {shape2}",
    "a {color2} {shape2} {rel_inv} a {color1} {shape1} on a {background} background",
    "two shapes , a {color1} {shape1} {rel} a {color2} {shape2}",
)


class BenchmarkError(ValueError):
    """Bad arguments or an output folder that cannot be written."""


def check_canvas_size(size: int) -> None:
    if size not in CANVAS_SIZES:
        raise BenchmarkError(
            f"canvas size {size} is not supported; choose one of {{32, 64, 128, 256}}"
        )


def object_side(size_name: str, size: int) -> int:
    """Bounding-box side in pixels, rounded down so that margin + large side <= S/2."""
    return math.floor(SIZES[size_name] * size)


def margin_pixels(size: int) -> int:
    """Smallest integer margin that keeps objects at least 0.05*S from the edge."""
    return math.ceil(MARGIN_FRACTION * size)


def _sample_pairs(rng: random.Random, count: int, heldout: bool) -> list[tuple[str, str]]:
    """(colour, shape) per object, uniform, conditioned on the split's held-out rule."""
    colors = list(PALETTE_OBJECTS)
    while True:
        pairs = [(rng.choice(colors), rng.choice(SHAPES)) for _ in range(count)]
        if count == 2 and pairs[0] == pairs[1]:
            continue
        n_heldout = sum(pair in HELDOUT_PAIRS for pair in pairs)
        if (heldout and n_heldout > 0) or (not heldout and n_heldout == 0):
            return pairs


def _place(rng: random.Random, side: int, size: int, region: str = "all") -> list[int]:
    """Top-left corner of a side x side box inside `region` of the canvas, with margin."""
    margin, half = margin_pixels(size), size // 2
    x_range = [margin, size - margin - side]
    y_range = [margin, size - margin - side]
    if region == "left":
        x_range[1] = half - side
    elif region == "right":
        x_range[0] = half
    elif region == "top":
        y_range[1] = half - side
    elif region == "bottom":
        y_range[0] = half
    assert x_range[0] <= x_range[1] and y_range[0] <= y_range[1], (region, side, size)
    return [rng.randint(*x_range), rng.randint(*y_range), side, side]


# Half of the canvas holding the first and the second object for each relation.
_RELATION_HALVES = {
    "left of": ("left", "right"),
    "right of": ("right", "left"),
    "above": ("top", "bottom"),
    "below": ("bottom", "top"),
}


def sample_scene(rng: random.Random, size: int, heldout: bool) -> dict[str, Any]:
    """Draw one scene's attributes: background, objects (shape, color, size, bbox), relation.

    `heldout=False` excludes HELDOUT_PAIRS (train/val); `heldout=True` guarantees at least
    one object of a held-out pair (test_heldout).
    """
    check_canvas_size(size)
    background = rng.choice(list(PALETTE_BACKGROUNDS))
    count = 1 if rng.random() < 0.5 else 2
    pairs = _sample_pairs(rng, count, heldout)
    size_names = [rng.choice(list(SIZES)) for _ in range(count)]
    relation = rng.choice(RELATIONS) if count == 2 else None
    regions = _RELATION_HALVES[relation] if relation else ("all",)
    objects = [
        {
            "shape": shape,
            "color": color,
            "size": size_name,
            "bbox": _place(rng, object_side(size_name, size), size, region),
        }
        for (color, shape), size_name, region in zip(pairs, size_names, regions, strict=True)
    ]
    return {"background": background, "objects": objects, "relation": relation}


def _draw_object(draw: ImageDraw.ImageDraw, obj: dict[str, Any], scale: int) -> None:
    x, y, w, h = (value * scale for value in obj["bbox"])
    fill = PALETTE_OBJECTS[obj["color"]]
    # Pillow's boxes include their last pixel, hence the -1 on the far edges.
    if obj["shape"] == "circle":
        draw.ellipse([x, y, x + w - 1, y + h - 1], fill=fill)
    elif obj["shape"] == "square":
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=fill)
    elif obj["shape"] == "triangle":
        apex = (x + (w - 1) / 2, y)
        draw.polygon([apex, (x, y + h - 1), (x + w - 1, y + h - 1)], fill=fill)
    else:
        raise BenchmarkError(f"unknown shape {obj['shape']!r}; expected one of {SHAPES}")


def render_scene(attributes: dict[str, Any], size: int) -> Image.Image:
    """Render a scene at 4*S with ImageDraw, then box-downsample to S x S RGB."""
    check_canvas_size(size)
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), PALETTE_BACKGROUNDS[attributes["background"]])
    draw = ImageDraw.Draw(canvas)
    for obj in attributes["objects"]:
        _draw_object(draw, obj, SUPERSAMPLE)
    return canvas.resize((size, size), Image.Resampling.BOX)


def captions_for(attributes: dict[str, Any], rng: random.Random) -> list[str]:
    """Five different captions for a scene, from five different templates."""
    return rng.sample(all_captions(attributes), 5)


def all_captions(attributes: dict[str, Any]) -> list[str]:
    """The scene's caption from every template of its kind (one or two objects), in order."""
    objects = attributes["objects"]
    if len(objects) == 1:
        (obj,) = objects
        templates = ONE_OBJECT_TEMPLATES
        fields = {
            "size": obj["size"],
            "color": obj["color"],
            "shape": obj["shape"],
            "background": attributes["background"],
        }
    else:
        first, second = objects
        templates = TWO_OBJECT_TEMPLATES
        fields = {
            "size1": first["size"],
            "color1": first["color"],
            "shape1": first["shape"],
            "size2": second["size"],
            "color2": second["color"],
            "shape2": second["shape"],
            "rel": attributes["relation"],
            "rel_inv": INVERSE_RELATION[attributes["relation"]],
            "background": attributes["background"],
        }
    return [template.format(**fields) for template in templates]


def image_rng(seed: int, split: str, index: int) -> random.Random:
    """The RNG of one image; string seeds go through SHA-512, stable across runs."""
    return random.Random(f"{SPEC_VERSION}/{seed}/{split}/{index}")


def split_scene(
    seed: int, split: str, index: int, size: int
) -> tuple[int, dict[str, Any], list[str]]:
    """(image id, attributes, five captions) of image `index` of `split` in the benchmark of
    `seed`, drawn as `make_benchmark` draws it, without rendering it."""
    rng = image_rng(seed, split, index)
    attributes = sample_scene(rng, size, heldout=split == "test_heldout")
    return _ID_OFFSET[split] + index + 1, attributes, captions_for(attributes, rng)


def _make_one(job: tuple[str, int, int, int, str]) -> tuple[dict[str, Any], list[str]]:
    """Sample, render and save one image; returns (image record, captions)."""
    split, index, seed, size, folder = job
    image_id, attributes, captions = split_scene(seed, split, index, size)
    file_name = f"{image_id:012d}.png"
    render_scene(attributes, size).save(Path(folder) / file_name, format="PNG", compress_level=6)
    record = {
        "id": image_id,
        "file_name": file_name,
        "width": size,
        "height": size,
        "attributes": attributes,
    }
    return record, captions


def _output_paths(root: Path) -> list[Path]:
    return [root / "shapes_benchmark.json"] + [
        path
        for split in SPLITS
        for path in (root / split, root / "annotations" / f"captions_{split}.json")
    ]


def _prepare_root(root: Path, overwrite: bool) -> None:
    existing = [path for path in _output_paths(root) if path.exists()]
    if existing and not overwrite:
        raise BenchmarkError(
            f"{root} already holds a shapes benchmark ({existing[0].name} exists); "
            "pass --overwrite (overwrite=True) to replace it"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (root / "annotations").mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(text + "\n", encoding="utf-8")
    temporary.replace(path)


def _results(
    jobs: list[tuple[str, int, int, int, str]], workers: int, progress: Any
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    if workers <= 1:
        for job in jobs:
            yield _make_one(job)
            progress.update(1)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        # imap keeps the job order, so the json is the same for any worker count.
        for result in pool.imap(_make_one, jobs, chunksize=64):
            yield result
            progress.update(1)


def make_benchmark(
    root: str | Path,
    size: int = 64,
    seed: int = 0,
    n_train: int = 20000,
    n_val: int = 1000,
    n_test_heldout: int = 1000,
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
) -> dict[str, int]:
    """Generate the benchmark under `root`; returns the number of images per split."""
    from tqdm import tqdm

    check_canvas_size(size)
    counts = {"train": n_train, "val": n_val, "test_heldout": n_test_heldout}
    for split, count in counts.items():
        if not 0 <= count <= _MAX_PER_SPLIT:
            raise BenchmarkError(f"{split} count {count} must be in [0, {_MAX_PER_SPLIT}]")
    if workers < 1:
        raise BenchmarkError(f"workers must be >= 1, got {workers}")
    root = Path(root)
    _prepare_root(root, overwrite)
    bar = tqdm(total=sum(counts.values()), desc="shapes", unit="img", disable=not progress)
    with bar:
        for split, count in counts.items():
            folder = root / split
            folder.mkdir()
            jobs = [(split, index, seed, size, str(folder)) for index in range(count)]
            images: list[dict[str, Any]] = []
            annotations: list[dict[str, Any]] = []
            for record, captions in _results(jobs, workers, bar):
                images.append(record)
                for caption in captions:
                    annotations.append(
                        {"id": len(annotations) + 1, "image_id": record["id"], "caption": caption}
                    )
            _write_json(
                root / "annotations" / f"captions_{split}.json",
                {"images": images, "annotations": annotations},
            )
    _write_json(
        root / "shapes_benchmark.json",
        {"spec": SPEC_VERSION, "size": size, "seed": seed, "counts": counts},
    )
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmc-shapes", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="generate the benchmark under ROOT")
    make.add_argument("root", metavar="ROOT", type=Path)
    make.add_argument("--size", type=int, default=64, help="canvas side: 32, 64, 128 or 256")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--train", type=int, default=20000, help="train images")
    make.add_argument("--val", type=int, default=1000, help="val images")
    make.add_argument("--test-heldout", type=int, default=1000, help="test_heldout images")
    make.add_argument("--workers", type=int, default=1, help="worker processes")
    make.add_argument("--overwrite", action="store_true", help="replace an existing benchmark")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        counts = make_benchmark(
            args.root,
            size=args.size,
            seed=args.seed,
            n_train=args.train,
            n_val=args.val,
            n_test_heldout=args.test_heldout,
            progress=not args.quiet,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except (BenchmarkError, OSError) as error:
        print(f"xmc-shapes: error: {error}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{split} {count}" for split, count in counts.items())
    print(f"wrote {summary} images ({args.size}x{args.size}, seed {args.seed}) to {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
