"""models.images: pixel conversions and the grids the docs' pictures are drawn with."""

from __future__ import annotations

import torch
from PIL import Image

from models.images import image_grid, labelled_rows, to_uint8


def test_to_uint8_rounds_and_clamps() -> None:
    images = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 5)
    assert to_uint8(images).flatten().tolist() == [0, 0, 128, 255, 255]


def test_image_grid_places_each_image_in_its_cell() -> None:
    images = torch.zeros(3, 3, 4, 4)
    images[1, 0] = 1.0  # the second image red
    grid = image_grid(images, columns=2, pad=2)
    assert grid.size == (2 * 6 + 2, 2 * 6 + 2)
    assert grid.getpixel((2 + 6 + 1, 2 + 1)) == (255, 0, 0)  # row 0, column 1
    assert grid.getpixel((2 + 1, 2 + 6 + 1)) == (0, 0, 0)  # row 1, column 0
    assert grid.getpixel((2 + 6 + 1, 2 + 6 + 1)) == (255, 255, 255)  # no fourth image


def test_labelled_rows_enlarges_each_image_after_its_label() -> None:
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    grid = labelled_rows([("a", [red, blue]), ("b", [blue])], scale=2, label_width=50, pad=4)
    assert grid.size == (50 + 2 * (16 + 4), 2 * (16 + 4))
    assert grid.getpixel((50 + 15, 15)) == (255, 0, 0)  # the whole 16 px cell is red
    assert grid.getpixel((50 + 20 + 1, 1)) == (0, 0, 255)
    assert grid.getpixel((50 + 1, 20 + 1)) == (0, 0, 255)
    assert grid.getpixel((50 + 20 + 1, 20 + 1)) == (255, 255, 255)  # row b has one image
    label = grid.crop((0, 0, 50, 16))
    assert label.getextrema()[0][0] < 64  # the label is drawn in black
