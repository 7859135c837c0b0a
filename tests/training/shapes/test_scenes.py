"""The shapes benchmark against its spec (v1): geometry, splits, captions, files, CLI."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.shapes import scenes as shapes
from training.shapes.scenes import (
    HELDOUT_PAIRS,
    PALETTE_BACKGROUNDS,
    PALETTE_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZES,
    captions_for,
    make_benchmark,
    render_scene,
    sample_scene,
)

SCENES = 300


def _scenes(size: int, heldout: bool, count: int = SCENES) -> list[dict]:
    rng = random.Random(1234 + size + heldout)
    return [sample_scene(rng, size, heldout) for _ in range(count)]


def _overlap(a: list[int], b: list[int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_palettes_match_spec() -> None:
    assert PALETTE_BACKGROUNDS == {
        "black": (25, 25, 25),
        "gray": (128, 128, 128),
        "white": (235, 235, 235),
    }
    assert PALETTE_OBJECTS["red"] == (220, 40, 40) and PALETTE_OBJECTS["pink"] == (240, 120, 180)
    assert len(PALETTE_OBJECTS) == 8 and set(SHAPES) == {"circle", "square", "triangle"}
    assert SIZES == {"small": 0.25, "large": 0.45}
    assert set(RELATIONS) == {"left of", "right of", "above", "below"}


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_geometry_margins_sizes_and_relation_halves(size: int) -> None:
    margin, half = 0.05 * size, size / 2
    scenes = _scenes(size, heldout=False, count=150)
    for scene in scenes:
        objects = scene["objects"]
        assert len(objects) in (1, 2) and (scene["relation"] is None) == (len(objects) == 1)
        for obj in objects:
            x, y, w, h = obj["bbox"]
            assert w == h and abs(w - SIZES[obj["size"]] * size) < 1
            assert x >= margin and y >= margin
            assert x + w <= size - margin and y + h <= size - margin
        if len(objects) == 2:
            first, second = (obj["bbox"] for obj in objects)
            assert not _overlap(first, second)
            assert (objects[0]["color"], objects[0]["shape"]) != (
                objects[1]["color"],
                objects[1]["shape"],
            )
            axis = 0 if scene["relation"] in ("left of", "right of") else 1
            low, high = (
                (first, second) if scene["relation"] in ("left of", "above") else (second, first)
            )
            assert low[axis] + low[axis + 2] <= half <= high[axis]


def test_scene_distribution_covers_every_value() -> None:
    scenes = _scenes(64, heldout=False)
    counts = [len(scene["objects"]) for scene in scenes]
    assert 0.4 < counts.count(1) / len(counts) < 0.6
    objects = [obj for scene in scenes for obj in scene["objects"]]
    assert {obj["color"] for obj in objects} == set(PALETTE_OBJECTS)
    assert {obj["shape"] for obj in objects} == set(SHAPES)
    assert {obj["size"] for obj in objects} == set(SIZES)
    assert {scene["background"] for scene in scenes} == set(PALETTE_BACKGROUNDS)
    assert {scene["relation"] for scene in scenes} == set(RELATIONS) | {None}


def test_heldout_pairs_excluded_from_train_and_present_in_test() -> None:
    for scene in _scenes(64, heldout=False):
        assert all((o["color"], o["shape"]) not in HELDOUT_PAIRS for o in scene["objects"])
    seen = set()
    for scene in _scenes(64, heldout=True):
        pairs = {(o["color"], o["shape"]) for o in scene["objects"]}
        assert pairs & HELDOUT_PAIRS
        seen |= pairs & HELDOUT_PAIRS
    assert seen == HELDOUT_PAIRS


def test_five_distinct_lowercase_captions_naming_the_attributes() -> None:
    rng = random.Random(7)
    for scene in _scenes(64, heldout=False):
        captions = captions_for(scene, rng)
        assert len(captions) == 5 and len(set(captions)) == 5
        for caption in captions:
            assert re.fullmatch(r"[a-z,]+( [a-z,]+)*", caption), caption
            for obj in scene["objects"]:
                assert f"{obj['color']} {obj['shape']}" in caption
        if scene["relation"]:
            inverse = shapes.INVERSE_RELATION[scene["relation"]]
            assert any(scene["relation"] in c or inverse in c for c in captions)


def test_relation_caption_reads_true() -> None:
    scene = {
        "background": "gray",
        "relation": "left of",
        "objects": [
            {"shape": "circle", "color": "red", "size": "small", "bbox": [4, 20, 16, 16]},
            {"shape": "square", "color": "blue", "size": "small", "bbox": [40, 20, 16, 16]},
        ],
    }
    captions = captions_for(scene, random.Random(0))
    for caption in captions:
        if "left of" in caption:
            assert caption.index("red circle") < caption.index("blue square")
        if "right of" in caption:
            assert caption.index("blue square") < caption.index("red circle")


@pytest.mark.parametrize("size", [32, 64])
def test_renders_show_palette_colours_at_object_centres(size: int) -> None:
    for scene in _scenes(size, heldout=True, count=100):
        image = np.asarray(render_scene(scene, size))
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert tuple(image[0, 0]) == PALETTE_BACKGROUNDS[scene["background"]]
        for obj in scene["objects"]:
            x, y, w, h = obj["bbox"]
            centre = image[y + h // 2, x + w // 2]
            assert tuple(centre) == PALETTE_OBJECTS[obj["color"]], (scene, obj)


def test_shapes_have_their_area() -> None:
    size, side = 64, 28
    areas = {}
    for shape in SHAPES:
        scene = {
            "background": "black",
            "relation": None,
            "objects": [
                {"shape": shape, "color": "yellow", "size": "large", "bbox": [10, 10, side, side]}
            ],
        }
        image = np.asarray(render_scene(scene, size)).astype(int)
        areas[shape] = (np.abs(image - np.array(PALETTE_BACKGROUNDS["black"])).sum(-1) > 60).sum()
    assert areas["square"] == side * side
    assert abs(areas["circle"] / side**2 - np.pi / 4) < 0.05
    assert abs(areas["triangle"] / side**2 - 0.5) < 0.05


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_layout(tmp_path: Path) -> None:
    counts = {"n_train": 12, "n_val": 4, "n_test_heldout": 6}
    make_benchmark(tmp_path / "a", size=32, seed=5, progress=False, **counts)
    make_benchmark(tmp_path / "b", size=32, seed=5, progress=False, workers=2, **counts)
    make_benchmark(tmp_path / "c", size=32, seed=6, progress=False, **counts)
    a, b, c = (_tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["annotations/captions_train.json"] != c["annotations/captions_train.json"]
    assert a["train/000000000001.png"] != c["train/000000000001.png"] or (
        a["train/000000000002.png"] != c["train/000000000002.png"]
    )

    data = json.loads(a["annotations/captions_test_heldout.json"])
    assert len(data["images"]) == 6 and len(data["annotations"]) == 30
    ids = [image["id"] for image in data["images"]]
    assert len({ann["id"] for ann in data["annotations"]}) == 30
    for image in data["images"]:
        assert set(image) == {"id", "file_name", "width", "height", "attributes"}
        assert image["file_name"] == f"{image['id']:012d}.png"
        png = Image.open(tmp_path / "a" / "test_heldout" / image["file_name"])
        assert png.size == (32, 32) and png.mode == "RGB"
        assert np.array_equal(np.asarray(png), np.asarray(render_scene(image["attributes"], 32)))
        mine = [ann["caption"] for ann in data["annotations"] if ann["image_id"] == image["id"]]
        assert len(set(mine)) == 5
    train_ids = [i["id"] for i in json.loads(a["annotations/captions_train.json"])["images"]]
    assert not set(train_ids) & set(ids)


def test_cli_make_refuses_to_overwrite_and_checks_size(tmp_path: Path, capsys) -> None:
    root = tmp_path / "bench"
    args = [
        "make",
        str(root),
        "--size",
        "32",
        "--train",
        "3",
        "--val",
        "2",
        "--test-heldout",
        "2",
        "--quiet",
    ]
    assert shapes.main(args) == 0
    assert len(list((root / "train").glob("*.png"))) == 3
    meta = json.loads((root / "shapes_benchmark.json").read_text())
    assert meta["size"] == 32 and meta["counts"]["val"] == 2

    assert shapes.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert shapes.main([*args[:5], "1", *args[6:], "--overwrite"]) == 0
    assert len(list((root / "train").glob("*.png"))) == 1

    assert shapes.main(["make", str(tmp_path / "other"), "--size", "48", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "48" in err and "{32, 64, 128, 256}" in err
    assert not (tmp_path / "other").exists()
    assert shapes.main(["make", str(tmp_path / "neg"), "--train", "-1", "--quiet"]) == 2
