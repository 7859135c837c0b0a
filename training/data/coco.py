"""COCO captions loader: MS-COCO 2014/2017 and the shapes benchmark, one layout.

    ROOT/annotations/captions_{split}.json     {"images": [...], "annotations": [...]}
    ROOT/{split}/{file_name}                    file_name as written in the json

COCO 2014 names its files `COCO_train2014_000000000009.jpg` (split `train2014`), COCO
2017 `000000000009.jpg` (split `train2017`), the shapes benchmark `000000000001.png`
(split `train`, `val`, `test_heldout`); all three read the same way.

Each item draws its caption and its flip from an RNG seeded by (seed, epoch, index), so a
resumed run that calls `set_epoch` sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """An annotations file, image folder or image that cannot be used, naming the file."""


def _inside(file_name: str) -> bool:
    """A file_name that stays inside its split folder: relative, no `..` out of it."""
    if not file_name or file_name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", file_name):
        return False
    normal = posixpath.normpath(file_name.replace("\\", "/"))
    return normal != ".." and not normal.startswith("../")


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a captions file with all of its captions."""

    image_id: int
    path: Path
    captions: tuple[str, ...]
    # The shapes benchmark's scene attributes; None for COCO.
    attributes: dict[str, Any] | None = None


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise DatasetError(f"{path}: {message}")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"annotations file not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:
            payload = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: malformed json ({error})") from None
    _require(isinstance(payload, dict), path, "expected a json object at the top level")
    for key in ("images", "annotations"):
        _require(isinstance(payload.get(key), list), path, f"missing list {key!r}")
    return payload


def load_captions_file(
    annotations_path: str | Path, image_folder: str | Path
) -> list[CaptionedImage]:
    """Parse a COCO captions json into images with their captions, sorted by image id.

    Images without any caption are left out (COCO has none). Raises DatasetError on any
    missing key or wrong type, naming the file.
    """
    path, folder = Path(annotations_path), Path(image_folder)
    payload = _read_json(path)
    files: dict[int, str] = {}
    attributes: dict[int, dict[str, Any] | None] = {}
    for position, image in enumerate(payload["images"]):
        _require(
            isinstance(image, dict)
            and isinstance(image.get("id"), int)
            and isinstance(image.get("file_name"), str),
            path,
            f"images[{position}] needs an integer 'id' and a string 'file_name'",
        )
        _require(image["id"] not in files, path, f"duplicate image id {image['id']}")
        _require(
            _inside(image["file_name"]),
            path,
            f"images[{position}] file_name {image['file_name']!r} leaves the image folder",
        )
        files[image["id"]] = image["file_name"]
        attributes[image["id"]] = image.get("attributes")
    captions: dict[int, list[tuple[int, str]]] = {}
    for position, annotation in enumerate(payload["annotations"]):
        _require(
            isinstance(annotation, dict)
            and isinstance(annotation.get("image_id"), int)
            and isinstance(annotation.get("caption"), str),
            path,
            f"annotations[{position}] needs an integer 'image_id' and a string 'caption'",
        )
        image_id = annotation["image_id"]
        _require(
            image_id in files,
            path,
            f"annotations[{position}] refers to unknown image_id {image_id}",
        )
        order = annotation.get("id", position)
        captions.setdefault(image_id, []).append(
            (order if isinstance(order, int) else position, annotation["caption"].strip())
        )
    return [
        CaptionedImage(
            image_id=image_id,
            path=folder / files[image_id],
            captions=tuple(text for _, text in sorted(captions[image_id])),
            attributes=attributes[image_id],
        )
        for image_id in sorted(captions)
    ]


def missing_files(records: list[CaptionedImage], folder: Path) -> list[Path]:
    """The records' image files that are not there (one listing of `folder`, not one stat
    per image)."""
    if not folder.is_dir():
        raise DatasetError(f"image folder not found: {folder}")
    present = set(os.listdir(folder))
    missing = [
        record.path
        for record in records
        if record.path.parent != folder or record.path.name not in present
    ]
    return [path for path in missing if not path.is_file()]


_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(caption: str) -> str:
    """Swap the words "left" and "right" (keeping their case), for mirrored images."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _LEFT_RIGHT.sub(swap, caption)


def load_rgb(path: Path) -> Image.Image:
    """Decode an image as RGB or raise DatasetError naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot decode image {path}: {error}") from None


def resize_image(image: Image.Image, resolution: int, center_crop: bool) -> Image.Image:
    """Bilinear resize to resolution x resolution, the whole image unless center_crop."""
    if center_crop:
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BILINEAR)
    return image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def check_pixels(pixels: str) -> str:
    if pixels not in ("float", "uint8"):
        raise DatasetError(f"pixels must be 'float' or 'uint8', got {pixels!r}")
    return pixels


def pixel_tensor(image: Image.Image, pixels: str) -> torch.Tensor:
    """PIL RGB -> (3, H, W): uint8 as stored, or float in [0, 1] (`to_tensor`)."""
    if pixels == "uint8":
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return to_tensor(image)


def next_good_item(
    dataset: Any, index: int, on_bad: Callable[[DatasetError], None], name: str
) -> dict[str, Any]:
    """dataset[index] through `dataset._load(i, skipped)`, or when that record's image cannot
    be decoded the next good one after it (wrapping round); `skipped` counts the bad records
    passed over to reach it. Each newly found bad record goes to `on_bad` (which raises to
    make it fatal) and is remembered in `dataset._bad`."""
    if not -len(dataset) <= index < len(dataset):
        raise IndexError(f"index {index} out of range for {len(dataset)} images")
    index %= len(dataset)
    passed = 0
    for offset in range(len(dataset)):
        candidate = (index + offset) % len(dataset)
        if candidate not in dataset._bad:
            try:
                return dataset._load(candidate, passed)
            except DatasetError as error:
                on_bad(error)
                dataset._bad.add(candidate)
        passed += 1
    raise DatasetError(f"no decodable image left in {name}")


class ItemOptions:
    """How a decoded record becomes an item (`CocoCaptions` and the other datasets)."""

    def __init__(
        self,
        resolution: int,
        *,
        center_crop: bool = False,
        random_flip: bool = True,
        swap_left_right_on_flip: bool = True,
        seed: int = 0,
        pixels: str = "float",
    ) -> None:
        check_pixels(pixels)
        if resolution < 1:
            raise DatasetError(f"resolution must be a positive integer, got {resolution}")
        if seed < 0:
            raise DatasetError(f"seed must be >= 0, got {seed}")
        self.resolution, self.center_crop, self.random_flip = resolution, center_crop, random_flip
        self.swap_left_right_on_flip, self.seed = swap_left_right_on_flip, seed
        # "uint8": items carry (3, R, R) uint8, a quarter of the bytes between processes;
        # `float_images` restores the float interface on the batch (module doc)
        self.pixels = pixels


def make_item(
    image: Image.Image,
    captions: Sequence[str],
    rng: np.random.Generator,
    options: ItemOptions,
    image_id: int,
    index: int,
    skipped: int = 0,
) -> dict[str, Any]:
    """Resize, maybe flip (with the caption's left/right swapped), draw one caption.

    `skipped` is how many bad records were passed over to reach this one: the trainer sums
    it over each batch, as it does for `CocoCaptions` items."""
    caption = captions[int(rng.integers(len(captions)))]
    flip = options.random_flip and bool(rng.random() < 0.5)
    image = resize_image(image, options.resolution, options.center_crop)
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if options.swap_left_right_on_flip:
            caption = swap_left_right(caption)
    return {
        "image": pixel_tensor(image, options.pixels),
        "caption": caption,
        "image_id": image_id,
        "index": index,
        "skipped": skipped,
    }


class CocoCaptions(Dataset):
    """Images of a COCO-layout split, each with one of its captions drawn per access.

    Items are dicts: image (3, R, R) float in [0, 1], caption str, image_id int, index int.
    The caption and the horizontal flip come from an RNG seeded by (seed, epoch, index):
    call `set_epoch` before building each epoch's DataLoader iterator (workers copy the
    dataset when the iterator is created). With `swap_left_right_on_flip` the words "left"
    and "right" of a flipped image's caption are swapped so that it stays true (needed for
    the shapes benchmark's relations). With `skip_bad`, an undecodable image is replaced
    by the next good one, counted in `skipped` (per process when using workers) and in the
    item's `skipped` field (how many bad records were passed over to reach it: the trainer
    sums these across workers), empty captions are dropped at load (counted in
    `empty_captions`; an image left with none is dropped too), and so are images listed in
    the annotations but missing from the folder (`missing_images`). Without it, any of
    these is a DatasetError naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        resolution: int,
        *,
        center_crop: bool = False,
        random_flip: bool = True,
        swap_left_right_on_flip: bool = True,
        skip_bad: bool = False,
        seed: int = 0,
        pixels: str = "float",
    ) -> None:
        self.options = ItemOptions(
            resolution,
            center_crop=center_crop,
            random_flip=random_flip,
            swap_left_right_on_flip=swap_left_right_on_flip,
            seed=seed,
            pixels=pixels,
        )
        self.root, self.split, self.resolution = Path(root), split, resolution
        self.skip_bad, self.seed = skip_bad, seed
        self.annotations_path = self.root / "annotations" / f"captions_{split}.json"
        self.image_folder = self.root / split
        self.records, self.empty_captions = self._drop_empty_captions(
            load_captions_file(self.annotations_path, self.image_folder)
        )
        self.missing_images = self._drop_missing_files()
        if not self.records:
            raise DatasetError(f"{self.annotations_path}: no captioned images")
        # dropped before training; the trainer adds them to the bad records of its batches
        self.load_skipped = self.empty_captions + self.missing_images
        self.epoch = 0
        self.skipped = 0
        self._bad: set[int] = set()

    def _drop_missing_files(self) -> int:
        """Leave out (and count) the records whose image file is not there: skipped like any
        other bad record, fatal without skip_bad."""
        missing = set(missing_files(self.records, self.image_folder))
        if missing and not self.skip_bad:
            raise DatasetError(
                f"{len(missing)} image file(s) listed in {self.annotations_path} are missing, "
                f"the first: {min(missing)} (skip such records with strict_data off)"
            )
        if missing:
            log.warning(
                "%s: skipped %d image(s) listed but missing, the first: %s",
                self.annotations_path,
                len(missing),
                min(missing),
            )
            self.records = [record for record in self.records if record.path not in missing]
        return len(missing)

    def _drop_empty_captions(
        self, records: list[CaptionedImage]
    ) -> tuple[list[CaptionedImage], int]:
        kept, empty = [], 0
        for record in records:
            captions = tuple(c for c in record.captions if c)
            if len(captions) < len(record.captions) and not self.skip_bad:
                raise DatasetError(
                    f"{self.annotations_path}: image {record.image_id} ({record.path.name}) "
                    "has an empty caption (skip such records with strict_data off)"
                )
            empty += len(record.captions) - len(captions)
            if captions:
                kept.append(dataclasses.replace(record, captions=captions))
        if empty:
            log.warning("%s: skipped %d empty caption(s)", self.annotations_path, empty)
        return kept, empty

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def item_rng(self, index: int) -> np.random.Generator:
        """The reproducible RNG of one (seed, epoch, index) draw."""
        return np.random.default_rng((self.seed, self.epoch, index))

    def _load(self, index: int, skipped: int) -> dict[str, Any]:
        record = self.records[index]
        image = load_rgb(record.path)
        rng = self.item_rng(index)
        return make_item(image, record.captions, rng, self.options, record.image_id, index, skipped)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return next_good_item(self, index, self._on_bad, str(self.image_folder))

    def _on_bad(self, error: DatasetError) -> None:
        if not self.skip_bad:
            raise error
        log.warning("skipping a bad record: %s", error)
        self.skipped += 1
