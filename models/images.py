"""Image tensors to pixels: the one home of the float -> uint8 -> PIL conversions and grids."""

from __future__ import annotations

import math

import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] (or already uint8) -> uint8 in [0, 255], same layout."""
    if images.dtype == torch.uint8:
        return images
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) float in [0, 1] or uint8 -> RGB PIL images."""
    pixels = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
    return [Image.fromarray(p, "RGB") for p in pixels]


def image_grid(images: torch.Tensor, columns: int, pad: int = 2) -> Image.Image:
    """(N, 3, H, W) float in [0, 1] or uint8 -> one RGB image, `columns` per row, white gutters."""
    n, _, h, w = images.shape
    rows = math.ceil(n / columns)
    grid = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, image in enumerate(to_pil(images)):
        r, c = divmod(i, columns)
        grid.paste(image, (pad + c * (w + pad), pad + r * (h + pad)))
    return grid


def labelled_rows(
    rows: list[tuple[str, list[Image.Image]]], scale: int = 4, label_width: int = 330, pad: int = 4
) -> Image.Image:
    """One row per (label, images): the label, then the images enlarged `scale` times (nearest
    neighbour, so a 32 px drawing stays readable), white gutters."""
    from PIL import ImageDraw

    side = scale * rows[0][1][0].width
    columns = max(len(images) for _, images in rows)
    grid = Image.new(
        "RGB", (label_width + columns * (side + pad), len(rows) * (side + pad)), "white"
    )
    draw = ImageDraw.Draw(grid)
    for row, (label, images) in enumerate(rows):
        y = row * (side + pad)
        draw.text((4, y + side // 2 - 6), label, fill="black")
        for col, image in enumerate(images):
            big = image.resize((side, side), Image.Resampling.NEAREST)
            grid.paste(big, (label_width + col * (side + pad), y))
    return grid
