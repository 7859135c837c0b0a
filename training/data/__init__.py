"""Training data sources, one item interface (see `records`), chosen by `open_source`:

- `coco`: a COCO captions layout (ROOT/annotations/captions_{split}.json + ROOT/{split}/);
- `folder`: a folder of images with same-name `.txt` captions;
- `jsonl`: a JSONL manifest of {"image": path, "caption": str | [str]};
- `shards`: img2dataset-format tar shards (a .tar, a brace pattern, a folder of .tar).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.data.base import DatasetError


def source_kind(spec: str | Path) -> str:
    """ "coco", "shards", "jsonl" or "folder": what the path is, or DatasetError."""
    text = str(spec)
    path = Path(text)
    if "{" in text or "::" in text or text.endswith(".tar") or "://" in text:
        return "shards"
    if path.suffix == ".jsonl":
        return "jsonl"
    if not path.exists():
        raise DatasetError(f"training data not found: {spec}")
    if path.is_dir() and (path / "annotations").is_dir():
        return "coco"
    if path.is_dir() and next(path.glob("*.tar"), None) is not None:
        return "shards"
    from training.data.folder import is_caption_folder

    if is_caption_folder(path):
        return "folder"
    raise DatasetError(
        f"{spec} is none of: a COCO root (with annotations/), a folder of images with .txt "
        "captions, a .jsonl manifest, .tar shards or a brace pattern of them"
    )


def open_source(
    spec: str | Path,
    resolution: int,
    *,
    split: str = "train2014",
    center_crop: bool = False,
    random_flip: bool = True,
    swap_left_right_on_flip: bool = True,
    seed: int = 0,
    skip_bad: bool = True,
    pixels: str = "float",
    **shard_options: Any,
) -> Any:
    """The dataset for `spec`: map-style for COCO, folder and JSONL (exact resume through
    `set_epoch` and the sampler), iterable for shards (`ShardCaptions.resume_at`).

    `split` is used by the COCO layout only; `shard_options` (shuffle_buffer, rank,
    world_size) by shards only. Every dataset skips and counts its bad records by the reasons
    of `records.REASONS` (`skipped`); `skip_bad=False` (the trainer's strict_data) makes the
    first bad record of any source a DatasetError naming the file.
    `pixels="uint8"` items carry uint8 images, a quarter of the bytes between processes
    (`float_images` or `stream.device_images` give the float batch).
    """
    kind = source_kind(spec)
    common: dict[str, Any] = {
        "center_crop": center_crop,
        "random_flip": random_flip,
        "swap_left_right_on_flip": swap_left_right_on_flip,
        "seed": seed,
        "pixels": pixels,
    }
    if shard_options and kind != "shards":
        raise DatasetError(f"{sorted(shard_options)} apply to shards only, {spec} is {kind}")
    if kind == "coco":
        from training.data.coco import CocoCaptions

        return CocoCaptions(spec, split, resolution, skip_bad=skip_bad, **common)
    if kind == "folder":
        from training.data.folder import FolderCaptions

        return FolderCaptions(spec, resolution, skip_bad=skip_bad, **common)
    if kind == "jsonl":
        from training.data.jsonl import JsonlCaptions

        return JsonlCaptions(spec, resolution, skip_bad=skip_bad, **common)
    from training.data.shards import ShardCaptions

    return ShardCaptions(spec, resolution, skip_bad=skip_bad, **common, **shard_options)
