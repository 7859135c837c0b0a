"""What every training source shares past its items (`training.data.base`): bad-record
counting, root confinement, caption text, and `CaptionedImages`, the map-style dataset over
records that the COCO, folder and JSONL sources are.

A bad record (an image that does not decode, an empty caption, a missing image or caption
file, a path outside the root, a malformed manifest line, an unreadable shard member or the
samples a truncated shard lost) is skipped, counted in a `BadRecords` under one of `REASONS`
and logged (the first 10 of each reason, then every 1000th): never silent. With
`BadRecords(fatal=True)` (the trainer's `strict_data`) the first one is a DatasetError
naming the file instead, for every source alike.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from training.data.base import CaptionedImage, DatasetError, ItemOptions, load_rgb, make_item

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
    """A map-style dataset over `CaptionedImage` records (COCO, folder and JSONL are ones).

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
        """Records skipped so far, for every reason counted in `bad`."""
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
        """Record `index`'s item or, when its image cannot be decoded, the next good one after
        it (wrapping round), its `skipped` the bad records passed over to reach it. Each newly
        found bad image is counted in `bad` (a DatasetError there when fatal) and remembered
        in `_bad`, never decoded again."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        passed = 0
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate not in self._bad:
                try:
                    return self._load(candidate, passed)
                except DatasetError as error:
                    self.bad.add("undecodable_image", str(error))
                    self._bad.add(candidate)
            passed += 1
        raise DatasetError(f"no decodable image left in {self.name}")
