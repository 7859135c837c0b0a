"""What every training source shares: the item dict, bad-record counting, root confinement.

Every source yields the items of `CocoCaptions`, so the trainer can swap them:

    {"image": (3, R, R) float32 in [0, 1], "caption": str, "image_id": int, "index": int}

A bad record (an image that does not decode, an empty caption, a missing image or caption
file, a path outside the root, a malformed manifest line, an unreadable shard member or the
samples a truncated shard lost) is skipped, counted in a `BadRecords` under one of `REASONS`
and logged (the first 10 of each reason, then every 1000th): never silent. With
`BadRecords(fatal=True)` (the trainer's `strict_data`) the first one is a DatasetError
naming the file instead, for every source alike.

Moving a float image between a DataLoader worker and the trainer copies 4 bytes a pixel,
which caps a 2-worker loader near 500 images/s at 256 px on this machine; with
`pixels="uint8"` (every source takes it; the trainer asks for it) items carry uint8 and
`float_images` converts the batch after the DataLoader, to exactly the same values; the trainer
does so on its device, after the transfer (`training.data.stream.device_images`).
"""

from __future__ import annotations

import io
import logging
import multiprocessing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from training.data.coco import (
    CaptionedImage,
    DatasetError,
    ItemOptions,
    load_rgb,
    make_item,
    next_good_item,
)

LOG = logging.getLogger("training.data")

# Why a record was skipped; the keys of `BadRecords.counts()`.
REASONS = (
    "undecodable_image",
    "empty_caption",
    "missing_caption",
    "missing_image",
    "outside_root",
    "malformed_record",
    "unreadable_shard",
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class BadRecords:
    """Counts of skipped records by reason, shared with DataLoader worker processes.

    The counters live in shared memory (`multiprocessing.Value`), so a worker's skip is
    visible in the main process: the trainer reads `dataset.bad.total` or `.counts()`.
    """

    def __init__(self, fatal: bool = False) -> None:
        self._values = {reason: multiprocessing.Value("q", 0) for reason in REASONS}
        self.fatal = fatal

    def add(self, reason: str, what: str, count: int = 1) -> None:
        """Count `count` bad records of `reason`; `what` names the file (and line or key).
        DatasetError instead when `fatal`."""
        value = self._values[reason]  # KeyError for an unknown reason: a bug, not data
        if self.fatal:
            raise DatasetError(f"{what} ({reason}; skip such records with strict_data off)")
        with value.get_lock():
            value.value += count
            seen = value.value
        if seen <= 10 or seen % 1000 == 0:
            LOG.warning("skipped a bad record (%s, %d so far): %s", reason, seen, what)

    def counts(self) -> dict[str, int]:
        return {reason: int(value.value) for reason, value in self._values.items()}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


def inside_root(path: Path, root: Path) -> bool:
    """True when `path` (symlinks resolved) lies under `root`."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def caption_lines(text: str) -> tuple[str, ...]:
    """The non-empty lines of a caption text, stripped: one caption per line."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def decode_image_bytes(data: bytes) -> Image.Image:
    """Encoded image bytes -> RGB (grayscale, CMYK, palette and alpha images included)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot decode image: {error}") from None


def float_images(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch of uint8 items -> the float interface: image (B, 3, R, R) in [0, 1].

    Exactly `to_tensor`'s values. Run it after the DataLoader (on the GPU, after moving
    the uint8 batch there, it is nearly free); float batches pass through unchanged.
    """
    batch["image"] = unit_float(batch["image"])
    return batch


def unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1], exactly `to_tensor`'s values; float ones as they are."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def keep_captioned(
    records: Iterable[CaptionedImage], bad: BadRecords, root: Path
) -> list[CaptionedImage]:
    """Drop (and count) records without a non-empty caption or whose image leaves `root`."""
    kept = []
    for record in records:
        if not inside_root(record.path, root):
            bad.add("outside_root", f"{record.path} is outside {root}")
        elif not record.captions:
            bad.add("empty_caption", f"{record.path} has no non-empty caption")
        else:
            kept.append(record)
    return kept


class CaptionedImages(Dataset):
    """A map-style dataset over `CaptionedImage` records, item for item like `CocoCaptions`.

    The caption and the flip come from an RNG seeded by (seed, epoch, index): call
    `set_epoch` before building each epoch's DataLoader iterator, and a resumed run sees
    exactly the batches of an uninterrupted one. An image that fails to decode is replaced
    by the next good one and counted in `bad` (shared across workers).
    """

    def __init__(
        self, records: list[CaptionedImage], options: ItemOptions, bad: BadRecords, name: str
    ) -> None:
        if not records:
            raise DatasetError(f"{name}: no captioned images (bad records: {bad.counts()})")
        self.records, self.options, self.bad, self.name = records, options, bad, name
        self.resolution = options.resolution
        self.epoch = 0
        self._bad: set[int] = set()
        # records dropped before training (no caption, outside the root, malformed line):
        # the trainer adds them to the bad records it counts in its batches
        self.load_skipped = bad.total

    def __len__(self) -> int:
        return len(self.records)

    @property
    def skipped(self) -> int:
        """Records skipped so far, for every reason (the `CocoCaptions.skipped` counterpart)."""
        return self.bad.total

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.options.seed, self.epoch, index))

    def _load(self, index: int, skipped: int) -> dict[str, Any]:
        record = self.records[index]
        image = load_rgb(record.path)
        rng = self.item_rng(index)
        return make_item(image, record.captions, rng, self.options, record.image_id, index, skipped)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return next_good_item(self, index, self._on_bad, self.name)

    def _on_bad(self, error: DatasetError) -> None:
        self.bad.add("undecodable_image", str(error))
