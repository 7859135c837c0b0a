"""Pixel-level measurements for scoring shapes-benchmark images against their attributes.

The faithfulness scorer (`training.shapes.scorer`) and the shape classifier
(`training.shapes.classifier`) share these, so the classifier is trained on exactly the
crops the scorer will show it. Everything works on batches of float images in [0, 255]:
`(B, 3, S, S)`. See "Scoring faithfulness" in docs/shapes-benchmark.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# A pixel is foreground when it lies farther than this (L2 in RGB, 0-255) from the
# background. The closest object/background pair of the palette (purple on gray) is
# 93.6 apart, so 40 keeps every object's interior and most of its antialiased rim.
FOREGROUND_THRESHOLD = 40.0
# Components smaller than this fraction of the canvas are speckle, not objects: the
# smallest real object (a small triangle) covers about 0.03 of it.
MIN_OBJECT_FRACTION = 0.005
# Crops for the shape classifier: the object's box, enlarged so its outline is whole.
CROP_SIZE = 28
CROP_MARGIN = 1.3


class ImageInputError(ValueError):
    """Images that are not a batch of S x S RGB pictures."""


def as_float_images(images: Sequence[Image.Image] | torch.Tensor, size: int) -> torch.Tensor:
    """PIL images (uint8) or a (B, 3, S, S) tensor in [0, 1] -> (B, 3, S, S) float in [0, 255]."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ImageInputError(
                f"expected images of shape (B, 3, S, S), got {tuple(images.shape)}"
            )
        pixels = images.detach().to("cpu", torch.float32)
        if images.dtype != torch.uint8:
            pixels = pixels.clamp(0.0, 1.0) * 255.0
    else:
        arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) for image in images]
        if not arrays:
            return torch.zeros(0, 3, size, size)
        shapes = {array.shape for array in arrays}
        if len(shapes) != 1:
            raise ImageInputError(f"images differ in size: {sorted(shapes)}")
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    if pixels.shape[-2:] != (size, size):
        raise ImageInputError(
            f"images are {pixels.shape[-1]}x{pixels.shape[-2]}, expected {size}x{size}"
        )
    return pixels.contiguous()


def ring_width(size: int) -> int:
    """Width of the outer ring that measures the background: 0.03 * S, at least one pixel."""
    return max(1, round(0.03 * size))


@functools.lru_cache(maxsize=8)
def ring_mask(size: int) -> torch.Tensor:
    """(S, S) bool, True on the outer ring (cached: callers must not modify it)."""
    width = ring_width(size)
    inner = torch.zeros(size, size, dtype=torch.bool)
    inner[width : size - width, width : size - width] = True
    return ~inner


def background_colors(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) -> (B, 3): per-channel median of the outer ring."""
    ring = ring_mask(pixels.shape[-1])
    return pixels[:, :, ring].median(dim=-1).values  # (B, 3)


def nearest_color(colors: torch.Tensor, palette: dict[str, tuple[int, int, int]]) -> list[str]:
    """(N, 3) colours -> the name of the nearest palette entry (L2 in RGB) for each."""
    names = list(palette)
    table = torch.tensor([palette[name] for name in names], dtype=torch.float32)  # (K, 3)
    if colors.shape[0] == 0:
        return []
    index = torch.cdist(colors.float(), table).argmin(dim=1)  # (N,)
    return [names[i] for i in index.tolist()]


def distance_from_background(pixels: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S), (B, 3) -> (B, S, S): L2 distance of every pixel from its background."""
    return (pixels - background[:, :, None, None]).norm(dim=1)


def foreground_masks(distance: torch.Tensor) -> torch.Tensor:
    """(B, S, S) distances -> (B, S, S) bool foreground, the background ring excluded."""
    return (distance > FOREGROUND_THRESHOLD) & ~ring_mask(distance.shape[-1])


def label_components(masks: torch.Tensor) -> torch.Tensor:
    """(B, S, S) bool -> (B, S, S) long labels of 8-connected components, 0 off the mask.

    Every pixel starts with its own id and repeatedly takes the largest id among its
    neighbours on the mask; this converges in (component diameter) steps and runs on the
    whole batch at once.
    """
    height, width = masks.shape[-2:]
    on = masks[:, None].float()  # (B, 1, S, S)
    ids = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, 1, height, width)
    labels = ids * on
    for _ in range(height * width):
        grown = F.max_pool2d(labels, kernel_size=3, stride=1, padding=1) * on
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels[:, 0].long()


def components(labels: torch.Tensor, min_area: int) -> list[torch.Tensor]:
    """(S, S) labels of one image -> masks (S, S) of its components, largest first."""
    ids, counts = labels[labels > 0].unique(return_counts=True)
    order = counts.argsort(descending=True, stable=True)
    return [labels == ids[i] for i in order.tolist() if counts[i] >= min_area]


def min_object_area(size: int) -> int:
    return max(3, round(MIN_OBJECT_FRACTION * size * size))


def mean_color(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(3, S, S), (S, S) bool -> (3,) mean colour of the masked pixels."""
    return pixels[:, mask].mean(dim=1)


def centroid(mask: torch.Tensor) -> tuple[float, float]:
    """(S, S) bool -> (x, y) mean pixel position."""
    ys, xs = mask.nonzero(as_tuple=True)
    return xs.float().mean().item(), ys.float().mean().item()


def dilate(mask: torch.Tensor) -> torch.Tensor:
    """(S, S) bool -> (S, S) bool grown by one pixel (8-neighbourhood)."""
    return F.max_pool2d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0


def object_crop(distance: torch.Tensor, own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """One object's silhouette, cropped around it: (1, CROP_SIZE, CROP_SIZE) in [0, 1].

    distance (S, S) from the background; own (S, S) bool, the object's pixels; others
    (S, S) bool, every other foreground pixel. The silhouette is the distance divided by
    the object's own contrast, so it is colour-blind and keeps the antialiased rim (the
    ring of pixels around `own`), without any pixel of another object.
    """
    size = distance.shape[-1]
    ys, xs = own.nonzero(as_tuple=True)
    x0, x1, y0, y1 = xs.min().item(), xs.max().item(), ys.min().item(), ys.max().item()
    side = max(x1 - x0 + 1, y1 - y0 + 1) * CROP_MARGIN + 2.0
    center_x, center_y = (x0 + x1) / 2, (y0 + y1) / 2
    # Work in a window just larger than the crop: O(object) instead of O(S^2).
    left, top = (
        max(0, math.floor(center_x - side / 2) - 2),
        max(0, math.floor(center_y - side / 2) - 2),
    )
    right = min(size, math.ceil(center_x + side / 2) + 3)
    bottom = min(size, math.ceil(center_y + side / 2) + 3)
    window = (slice(top, bottom), slice(left, right))
    own, others, distance = own[window], others[window], distance[window]
    contrast = distance[own].mean().clamp_min(1.0)
    silhouette = (distance / contrast).clamp(0.0, 1.0) * (dilate(own) & ~others)
    # Sample positions in window pixels, then in grid_sample's align_corners=False
    # coordinates, where pixel i of n sits at (2i + 1) / n - 1.
    steps = (torch.arange(CROP_SIZE, dtype=torch.float32) * 2 + 1) / CROP_SIZE - 1  # (C,)
    grid_x = (2 * (center_x - left + steps * side / 2) + 1) / (right - left) - 1  # (C,)
    grid_y = (2 * (center_y - top + steps * side / 2) + 1) / (bottom - top) - 1  # (C,)
    grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1)  # (C, C, 2)
    crop = F.grid_sample(
        silhouette[None, None],
        grid[None],
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return crop[0]  # (1, CROP_SIZE, CROP_SIZE)


def scene_object_masks(
    foreground: torch.Tensor, attributes: dict[str, Any], scale: float = 1.0
) -> list[torch.Tensor]:
    """Ground-truth pixels of each object of a real render: the foreground inside its box.

    For training and gating the shape classifier, where the boxes are known. `scale`
    maps the boxes' pixels to this image's (image side / benchmark side).
    """
    size = foreground.shape[-1]
    boxes, rims = [], []
    for obj in attributes["objects"]:
        x, y, w, h = (value * scale for value in obj["bbox"])
        box = torch.zeros(size, size, dtype=torch.bool)
        box[int(y) : math.ceil(y + h), int(x) : math.ceil(x + w)] = True
        boxes.append(box)
        rims.append(dilate(box))
    inside_any = torch.stack(boxes).any(dim=0)
    # A pixel inside a box is that object's; a rim pixel outside every box is its neighbour's.
    return [foreground & (box | (rim & ~inside_any)) for box, rim in zip(boxes, rims, strict=True)]
