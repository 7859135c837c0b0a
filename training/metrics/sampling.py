"""What every evaluation shares: a split's records, one caption per image, generation.

Image i of an evaluation is generated from the caption drawn for it with z seed
`seed * 1_000_003 + i`, so two runs with the same seed produce the same images.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.images import to_uint8
from training.data.base import CaptionedImage, load_rgb
from training.data.coco import load_captions_file


class EvaluationError(ValueError):
    """Bad arguments or data for an evaluation, explained for the user."""


def load_split(
    data_root: str | Path, split: str, num: int | None = None, need_attributes: bool = False
) -> list[CaptionedImage]:
    """The split's images with their captions, sorted by id, the first `num` if given."""
    root = Path(data_root)
    records = load_captions_file(root / "annotations" / f"captions_{split}.json", root / split)
    if num is not None:
        if num < 1:
            raise EvaluationError(f"--num must be >= 1, got {num}")
        records = records[:num]
    if not records:
        raise EvaluationError(f"split {split!r} of {root} holds no captioned image")
    if need_attributes and any(record.attributes is None for record in records):
        raise EvaluationError(
            f"split {split!r} of {root} has no scene attributes: "
            "faithfulness needs the shapes benchmark, not COCO"
        )
    return records


def pick_captions(records: Sequence[CaptionedImage], seed: int) -> list[str]:
    """One caption per image, drawn from an RNG seeded by (seed, image id)."""
    return [
        random.Random(f"xmc-eval/{seed}/{record.image_id}").choice(record.captions)
        for record in records
    ]


def names_every_attribute(caption: str, attributes: dict[str, Any]) -> bool:
    """Whether a shapes caption determines every attribute the scorer checks: the background,
    each object's colour and shape, and (two objects) their relation."""
    words = f" {caption} "
    named = f" {attributes['background']} " in words and all(
        f"{obj['color']} {obj['shape']}" in caption for obj in attributes["objects"]
    )
    if attributes.get("relation"):
        from training.shapes.scenes import INVERSE_RELATION

        relation = attributes["relation"]
        named = named and (relation in caption or INVERSE_RELATION[relation] in caption)
    return named


def complete_captions(records: Sequence[CaptionedImage], seed: int) -> list[str]:
    """One caption per image that names every scored attribute: drawn, with the RNG of
    `pick_captions`, among the benchmark's own templates filled in with its attributes."""
    from training.shapes.scenes import all_captions

    chosen = []
    for record in records:
        full = [c for c in all_captions(record.scene()) if names_every_attribute(c, record.scene())]
        chosen.append(random.Random(f"xmc-eval/{seed}/{record.image_id}").choice(full))
    return chosen


def generate(
    pipeline: Any,
    captions: Sequence[str],
    seed: int,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "generate",
    first_index: int = 0,
) -> torch.Tensor:
    """(N, 3, R, R) uint8 images, image i drawn with z seed `seed * 1_000_003 + i`.

    `first_index` numbers the captions from there (a chunk of a longer evaluation)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be >= 1, got {batch_size}")
    batches = []
    starts = range(0, len(captions), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        chunk = list(captions[start : start + batch_size])
        seeds = [seed * 1_000_003 + first_index + start + i for i in range(len(chunk))]
        images = pipeline.generate(pipeline.encode_text(chunk), seeds)  # (B, 3, R, R) in [0, 1]
        batches.append(to_uint8(images))
    return torch.cat(batches)


def real_images(records: Sequence[CaptionedImage], resolution: int) -> torch.Tensor:
    """(N, 3, R, R) uint8: the split's images, box-resized to R if they differ."""
    rows = []
    for record in records:
        image = load_rgb(record.path)
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.Resampling.BOX)
        rows.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    return torch.stack(rows)
