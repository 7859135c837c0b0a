"""Tiny synthetic sources: JPEGs of mixed sizes and modes, a corrupt file, an empty caption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def mixed_images() -> dict[str, Image.Image]:
    """Six decodable images in the modes a web crawl brings: RGB, L, CMYK, P, RGBA."""
    rng = np.random.default_rng(0)

    def pixels(height: int, width: int, channels: int) -> np.ndarray:
        return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)

    return {
        "rgb_wide.jpg": Image.fromarray(pixels(30, 50, 3)),
        "rgb_tall.jpg": Image.fromarray(pixels(70, 40, 3)),
        "gray.jpg": Image.fromarray(pixels(40, 40, 1)[..., 0], mode="L"),
        "cmyk.jpg": Image.fromarray(pixels(36, 48, 4), mode="CMYK"),
        "palette.png": Image.fromarray(pixels(33, 33, 3)).convert("P"),
        "alpha.png": Image.fromarray(pixels(20, 28, 4), mode="RGBA"),
    }


GOOD = 6  # the decodable, captioned images of every source below


def write_images(folder: Path) -> dict[str, list[str]]:
    """The mixed images, a corrupt JPEG and an uncaptioned one; returns name -> captions."""
    folder.mkdir(parents=True, exist_ok=True)
    captions: dict[str, list[str]] = {}
    for k, (name, image) in enumerate(mixed_images().items()):
        image.save(folder / name)
        captions[name] = [f"picture {k} on the left", f"another caption {k}"][: 1 + k % 2]
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    captions["corrupt.jpg"] = ["a corrupt file"]
    Image.new("RGB", (16, 16), "red").save(folder / "empty.jpg")
    captions["empty.jpg"] = ["", "   "]
    return captions


@pytest.fixture
def caption_folder(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    for name, texts in write_images(root / "sub").items():
        (root / "sub" / name).with_suffix(".txt").write_text("\n".join(texts) + "\n")
    return root


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    root = tmp_path / "manifest"
    lines = [
        json.dumps({"image": f"img/{name}", "caption": texts if len(texts) > 1 else texts[0]})
        for name, texts in write_images(root / "img").items()
    ]
    lines += ["{not json", json.dumps({"image": "../../outside.jpg", "caption": "escape"})]
    path = root / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    captions = write_images(root / "train2014")
    names = sorted(captions)
    payload = {
        "images": [{"id": i + 1, "file_name": n} for i, n in enumerate(names)],
        "annotations": [
            {"id": 100 * (i + 1) + k, "image_id": i + 1, "caption": text}
            for i, n in enumerate(names)
            for k, text in enumerate(captions[n])
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_train2014.json").write_text(json.dumps(payload))
    return root
