"""A JSONL manifest: one image per line, its caption(s) beside it.

    {"image": "photos/cat.jpg", "caption": "a cat on a mat"}
    {"image": "photos/dog.jpg", "caption": ["a dog", "a brown dog"], "id": 7}

Image paths are relative to the manifest's folder (or to `root` when given); a path that
leads out of that root, absolute or through `..` or a symlink, is refused (skipped and
counted). `id` (an integer) becomes `image_id`; without it the line number (from 0) does.
A malformed line, a missing image key, or a caption list with no non-empty text is skipped
and counted; an empty text beside non-empty ones is dropped and counted (`empty_caption`),
as COCO does, and fatal with strict_data.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from training.data.base import CaptionedImage, DatasetError, ItemOptions
from training.data.records import BadRecords, CaptionedImages, keep_captioned


def _captions(value: Any) -> tuple[str, ...] | None:
    """A caption or list of captions -> stripped texts (empty ones too: `read_manifest` counts
    them); None if of the wrong type."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        return None
    return tuple(text.strip() for text in texts)


def _record(line: str, number: int, base: Path, where: str) -> CaptionedImage | str:
    """One manifest line -> a record, or the reason it is malformed."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        return f"{where}: not JSON ({error})"
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        return f"{where}: needs a string 'image'"
    captions = _captions(entry.get("caption", entry.get("captions")))
    if captions is None:
        return f"{where}: 'caption' must be a string or a list of strings"
    image_id = entry.get("id", number)
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        return f"{where}: 'id' must be an integer"
    return CaptionedImage(image_id, base / entry["image"], captions)


def read_manifest(
    path: str | Path, bad: BadRecords, root: str | Path | None = None
) -> list[CaptionedImage]:
    """The manifest's records in file order; bad lines counted in `bad`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    base = Path(root) if root is not None else path.parent
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            record = _record(line, number, base, f"{path}:{number + 1}")
            if isinstance(record, str):
                bad.add("malformed_record", record)
                continue
            kept = tuple(caption for caption in record.captions if caption)
            if kept and len(kept) < len(record.captions):  # none left: keep_captioned counts it
                # as COCO does: dropped and counted, fatal with strict_data (`bad.fatal`)
                where = f"{path}:{number + 1}: {record.path.name}"
                bad.add("empty_caption", f"{where} has an empty caption among its captions")
            records.append(dataclasses.replace(record, captions=kept))
    return keep_captioned(records, bad, base)


def JsonlCaptions(
    path: str | Path,
    resolution: int,
    *,
    root: str | Path | None = None,
    skip_bad: bool = True,
    **options: Any,
) -> CaptionedImages:
    """A map-style dataset of a JSONL manifest (items as `CocoCaptions`); `options` are
    `ItemOptions` keywords (center_crop, random_flip, swap_left_right_on_flip, seed, pixels).
    Without `skip_bad` the first bad record is a DatasetError naming the file and line."""
    bad, item = BadRecords(fatal=not skip_bad), ItemOptions(resolution, **options)
    return CaptionedImages(read_manifest(path, bad, root), item, bad, str(path))
