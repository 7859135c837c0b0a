"""`xmc-prepare`: a COCO-layout root, an image + .txt folder or a JSONL manifest -> tar shards.

    xmc-prepare SOURCE OUT [--resolution 256] [--split train2014] [--workers 4]

Every image is decoded once, resized to the training resolution exactly as the loader
resizes (`coco.resize_image`: bilinear, the whole image unless --center-crop) and stored
as a JPEG (quality 95) or PNG, with all of its captions one per line in `KEY.txt` and
{"image_id", "source", "captions"} in `KEY.json`: the img2dataset layout, written by
webdataset's ShardWriter as OUT/000000.tar, OUT/000001.tar, ... The loader then decodes a
small image per sample instead of a full-size one. Bad records are skipped and counted;
the counts, the shard list and each shard's sample count (`shard_samples`: the loader counts
the samples a truncated shard lost from it) are written to OUT/prepare.json.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.base import CaptionedImage, DatasetError, load_rgb, resize_image
from training.data.records import BadRecords, keep_captioned


@dataclass(frozen=True)
class EncodeOptions:
    resolution: int
    center_crop: bool = False
    image_format: str = "jpg"  # "jpg" (quality 95, img2dataset's default) or "png"
    quality: int = 95


def source_records(
    source: str | Path, split: str, bad: BadRecords
) -> tuple[list[CaptionedImage], Path]:
    """The records of a COCO root, a caption folder or a JSONL manifest, with their root."""
    from training.data import source_kind

    kind = source_kind(source)
    path = Path(source)
    if kind == "coco":
        from training.data.coco import load_captions_file

        records = load_captions_file(path / "annotations" / f"captions_{split}.json", path / split)
        cleaned = [
            CaptionedImage(r.image_id, r.path, tuple(c for c in r.captions if c), r.attributes)
            for r in records
        ]
        return keep_captioned(cleaned, bad, path), path
    if kind == "folder":
        from training.data.folder import scan_folder

        return scan_folder(path, bad), path
    if kind == "jsonl":
        from training.data.jsonl import read_manifest

        return read_manifest(path, bad), path.parent
    raise DatasetError(f"{source} is already tar shards: nothing to prepare")


def encode_record(
    job: tuple[CaptionedImage, EncodeOptions],
) -> tuple[CaptionedImage, bytes | None, str]:
    """(record, encoded image or None, error text): runs in a worker process."""
    record, options = job
    try:
        image = resize_image(load_rgb(record.path), options.resolution, options.center_crop)
    except DatasetError as error:
        return record, None, str(error)
    buffer = io.BytesIO()
    if options.image_format == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=options.quality)
    return record, buffer.getvalue(), ""


def _encoded(
    records: Sequence[CaptionedImage], options: EncodeOptions, workers: int
) -> Iterator[tuple[CaptionedImage, bytes | None, str]]:
    jobs = ((record, options) for record in records)
    if workers <= 1:
        yield from map(encode_record, jobs)
        return
    with multiprocessing.Pool(workers) as pool:
        yield from pool.imap(encode_record, jobs, chunksize=16)  # in order: stable keys


def prepare_shards(
    source: str | Path,
    out: str | Path,
    options: EncodeOptions,
    *,
    split: str = "train2014",
    shard_size: int = 10_000,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the shards; returns (and writes to OUT/prepare.json) what was done."""
    import webdataset as wds
    from tqdm import tqdm

    if shard_size < 1 or options.resolution < 1:
        raise DatasetError(f"--shard-size and --resolution must be >= 1, got {shard_size}")
    if options.image_format not in ("jpg", "png"):
        raise DatasetError(f"--format must be jpg or png, got {options.image_format!r}")
    bad = BadRecords()
    records, root = source_records(source, split, bad)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    per_shard: dict[str, int] = {}  # read back by the loader to count a truncated shard's loss
    pattern = str(out / "%06d.tar")
    # whole seconds: a float mtime (webdataset's) puts a PAX header before every tar member
    with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0, mtime=int(time.time())) as writer:
        encoded = _encoded(records, options, workers)
        for record, data, error in tqdm(
            encoded, total=len(records), desc="prepare", unit="img", disable=not progress
        ):
            if data is None:
                reason = "undecodable_image" if record.path.exists() else "missing_image"
                bad.add(reason, error)
                continue
            writer.write(_sample(record, root, data, written, options.image_format))
            written += 1
            name = Path(writer.fname).name
            per_shard[name] = per_shard.get(name, 0) + 1
    summary: dict[str, Any] = {
        "source": str(source),
        "resolution": options.resolution,
        "center_crop": options.center_crop,
        "format": options.image_format,
        "samples": written,
        "shards": sorted(p.name for p in out.glob("*.tar")),
        "shard_samples": per_shard,
        "skipped": bad.counts(),
    }
    (out / "prepare.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _sample(record: Any, root: Path, data: bytes, index: int, image_format: str) -> dict:
    """One webdataset sample: the encoded image, the captions (txt) and their metadata (json)."""
    meta = {
        "image_id": record.image_id,
        "source": record.path.relative_to(root).as_posix()
        if record.path.is_relative_to(root)
        else record.path.name,
        "captions": list(record.captions),
    }
    txt = "\n".join(record.captions)
    return {"__key__": f"{index:09d}", image_format: data, "txt": txt, "json": meta}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmc-prepare", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="COCO root, image + .txt folder, or .jsonl manifest")
    parser.add_argument("out", type=Path, help="folder for the .tar shards")
    parser.add_argument(
        "--resolution",
        type=int,
        default=256,
        help="side the images are stored at: your training resolution stores the least "
        "(default 256, the largest preset's; the loader resizes to the model's side anyway)",
    )
    parser.add_argument("--split", default="train2014", help="COCO split (default train2014)")
    parser.add_argument("--center-crop", action="store_true", help="crop to a square first")
    parser.add_argument("--format", default="jpg", choices=("jpg", "png"))
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument("--shard-size", type=int, default=10_000, help="samples per shard")
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count()))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = EncodeOptions(args.resolution, args.center_crop, args.format, args.quality)
    try:
        summary = prepare_shards(
            args.source,
            args.out,
            options,
            split=args.split,
            shard_size=args.shard_size,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (DatasetError, OSError) as error:
        print(f"xmc-prepare: error: {error}", file=sys.stderr)
        return 2
    skipped = sum(summary["skipped"].values())
    print(
        f"wrote {summary['samples']} samples in {len(summary['shards'])} shard(s) to "
        f"{args.out} ({skipped} bad record(s) skipped: see prepare.json)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
