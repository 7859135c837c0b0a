"""Your own captioned images: a folder of images with same-name `.txt` captions.

    ROOT/cat.jpg          ROOT/cat.txt        one caption per line; several lines =
    ROOT/sub/dog.png      ROOT/sub/dog.txt    several captions, one drawn per access

Subfolders are searched; images are ordered by their path relative to ROOT and numbered
from 0 in that order (`image_id`). An image without a `.txt` beside it, or whose `.txt`
holds only blank lines, is skipped and counted, as is a symlink that leads out of ROOT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.data.base import CaptionedImage, DatasetError, ItemOptions
from training.data.records import (
    IMAGE_EXTENSIONS,
    BadRecords,
    CaptionedImages,
    caption_lines,
    keep_captioned,
)


def is_caption_folder(path: Path) -> bool:
    """A folder holding at least one `.txt` (searched recursively)."""
    return path.is_dir() and next(path.rglob("*.txt"), None) is not None


def scan_folder(root: str | Path, bad: BadRecords) -> list[CaptionedImage]:
    """The folder's captioned images, ordered by relative path; bad ones counted in `bad`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    images = sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )
    records: list[CaptionedImage] = []
    for path in images:
        text_path = path.with_suffix(".txt")
        if not text_path.is_file():
            bad.add("missing_caption", f"{path} has no {text_path.name}")
            continue
        try:
            captions = caption_lines(text_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            bad.add("malformed_record", f"{text_path}: {error}")
            continue
        records.append(CaptionedImage(len(records), path, captions))
    kept = keep_captioned(records, bad, root)
    # ids follow the kept order, so they do not depend on which records were bad
    return [CaptionedImage(i, r.path, r.captions) for i, r in enumerate(kept)]


def FolderCaptions(
    root: str | Path,
    resolution: int,
    *,
    skip_bad: bool = True,
    **options: Any,
) -> CaptionedImages:
    """A map-style dataset of an image + `.txt` folder (items as `CocoCaptions`); `options` are
    `ItemOptions` keywords (center_crop, random_flip, swap_left_right_on_flip, seed, pixels).
    Without `skip_bad` the first bad record is a DatasetError naming the file."""
    bad, item = BadRecords(fatal=not skip_bad), ItemOptions(resolution, **options)
    return CaptionedImages(scan_folder(root, bad), item, bad, str(root))
