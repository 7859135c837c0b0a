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
from pathlib import Path
from typing import Any

from training.data.base import CaptionedImage, DatasetError, ItemOptions
from training.data.records import BadRecords, CaptionedImages

log = logging.getLogger(__name__)


def _inside(file_name: str) -> bool:
    """A file_name that stays inside its split folder: relative, no `..` out of it."""
    if not file_name or file_name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", file_name):
        return False
    normal = posixpath.normpath(file_name.replace("\\", "/"))
    return normal != ".." and not normal.startswith("../")


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


class CocoCaptions(CaptionedImages):
    """Images of a COCO-layout split, each with one of its captions drawn per access (the
    items and the seeded epochs of `CaptionedImages`).

    With `swap_left_right_on_flip` the words "left" and "right" of a flipped image's caption
    are swapped so that it stays true (needed for the shapes benchmark's relations). With
    `skip_bad`, an undecodable image is replaced by the next good one and counted in
    `skipped` (shared by the DataLoader workers) and in the item's `skipped` field, empty
    captions are dropped at load (counted in `empty_captions`, one by one; an image left with
    none is dropped too), and so are images listed in the annotations but missing from the
    folder (`missing_images`). Without it, any of these is a DatasetError naming the file.
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
        options = ItemOptions(
            resolution,
            center_crop=center_crop,
            random_flip=random_flip,
            swap_left_right_on_flip=swap_left_right_on_flip,
            seed=seed,
            pixels=pixels,
        )
        self.root, self.split = Path(root), split
        self.skip_bad, self.seed = skip_bad, seed
        self.annotations_path = self.root / "annotations" / f"captions_{split}.json"
        self.image_folder = self.root / split
        self.records, self.empty_captions = self._drop_empty_captions(
            load_captions_file(self.annotations_path, self.image_folder)
        )
        self.missing_images = self._drop_missing_files()
        if not self.records:
            raise DatasetError(f"{self.annotations_path}: no captioned images")
        bad = BadRecords(fatal=not skip_bad)
        super().__init__(self.records, options, bad, str(self.image_folder))
        # dropped before training; the trainer adds them to the bad records of its batches
        self.load_skipped = self.empty_captions + self.missing_images

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
