"""What every training source's items are made of: the record, decoding, the pixels, the item.

Every source (`coco`, `folder`, `jsonl`, `shards`) yields the same item, so the trainer can
swap them:

    {"image": (3, R, R) float32 in [0, 1] (or uint8), "caption": str, "image_id": int,
     "index": int, "skipped": int}

`make_item` builds it from a decoded image and the record's captions: resize (optionally
a centre crop), a seeded horizontal flip (with "left" and "right" swapped in the caption so
that it stays true) and one caption drawn, all from the RNG the source seeds per item.

Moving a float image between a DataLoader worker and the trainer copies 4 bytes a pixel,
which caps a 2-worker loader near 500 images/s at 256 px on this machine; with
`pixels="uint8"` (every source takes it; the trainer asks for it) items carry uint8 and
`float_images` converts the batch after the DataLoader, to exactly the same values; the trainer
does so on its device, after the transfer (`training.data.stream.device_images`).

The bad-record accounting and the map-style dataset every source but shards is built on are
in `training.data.records`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


class DatasetError(ValueError):
    """An annotations file, image folder or image that cannot be used, naming the file."""


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a captions file with all of its captions."""

    image_id: int
    path: Path
    captions: tuple[str, ...]
    # The shapes benchmark's scene attributes; None for COCO.
    attributes: dict[str, Any] | None = None

    def scene(self) -> dict[str, Any]:
        """The shapes benchmark's scene attributes; DatasetError for a record without any."""
        if self.attributes is None:
            raise DatasetError(f"{self.path}: no scene attributes (not a shapes benchmark split)")
        return self.attributes


def load_rgb(path: Path) -> Image.Image:
    """Decode an image as RGB or raise DatasetError naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot decode image {path}: {error}") from None


def decode_image_bytes(data: bytes) -> Image.Image:
    """Encoded image bytes -> RGB (grayscale, CMYK, palette and alpha images included)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot decode image: {error}") from None


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
