"""CocoCaptions on the shapes layout and on mini COCO 2014/2017 trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from training.data.base import DatasetError, swap_left_right
from training.data.coco import CocoCaptions, load_captions_file
from training.shapes.scenes import make_benchmark

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _bands(width: int, height: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    """Vertical bands of equal width, left to right."""
    image = np.zeros((height, width, 3), np.uint8)
    step = width // len(colours)
    for k, colour in enumerate(colours):
        image[:, k * step : (k + 1) * step] = colour
    return Image.fromarray(image)


def _write_coco(
    root: Path,
    split: str,
    names: dict[int, str],
    captions: dict[int, list[str]],
    images: dict[int, Image.Image],
) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    annotations = [
        {"id": 100 * image_id + k, "image_id": image_id, "caption": caption}
        for image_id, texts in captions.items()
        for k, caption in enumerate(texts)
    ]
    payload = {
        "info": {},
        "licenses": [],
        "annotations": annotations[::-1],
        "images": [{"id": i, "file_name": n, "width": 60, "height": 20} for i, n in names.items()],
    }
    (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(payload))
    for image_id, image in images.items():
        image.save(root / split / names[image_id], quality=100)


@pytest.fixture
def coco2014(tmp_path: Path) -> Path:
    names = {9: "COCO_train2014_000000000009.jpg", 25: "COCO_train2014_000000000025.jpg"}
    captions = {
        9: ["A man to the left.", "a dog", "a cat", "two birds", "one tree"],
        25: ["bands of colour"],
    }
    images = {9: _bands(48, 32, [RED, BLUE]), 25: _bands(60, 20, [RED, GREEN, BLUE])}
    _write_coco(tmp_path, "train2014", names, captions, images)
    return tmp_path


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_benchmark(root, size=32, seed=0, n_train=16, n_val=2, n_test_heldout=2, progress=False)
    return root


def test_shapes_layout_items(shapes_root: Path) -> None:
    dataset = CocoCaptions(shapes_root, "train", 16, random_flip=False)
    assert len(dataset) == 16
    item = dataset[3]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    record = dataset.records[3]
    assert item["caption"] in record.captions and len(record.captions) == 5
    assert item["image_id"] == record.image_id and item["index"] == 3
    assert record.attributes is not None and "objects" in record.attributes
    # At the native resolution the tensor is the PNG's pixels, unresampled.
    native = CocoCaptions(shapes_root, "test_heldout", 32, random_flip=False)
    png = np.asarray(Image.open(native.records[0].path))
    expected = torch.from_numpy(png.copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(native[0]["image"], expected)


def test_default_collate_batches_dicts(shapes_root: Path) -> None:
    batch = next(iter(DataLoader(CocoCaptions(shapes_root, "train", 8), batch_size=4)))
    assert batch["image"].shape == (4, 3, 8, 8)
    assert len(batch["caption"]) == 4 and batch["index"].tolist() == [0, 1, 2, 3]


def test_coco2014_names_grouping_and_resize(coco2014: Path) -> None:
    dataset = CocoCaptions(coco2014, "train2014", 24, random_flip=False)
    assert [r.image_id for r in dataset.records] == [9, 25]
    # Captions grouped per image, in annotation id order, stripped.
    assert dataset.records[0].captions == (
        "A man to the left.",
        "a dog",
        "a cat",
        "two birds",
        "one tree",
    )
    item = dataset[1]
    assert item["image"].shape == (3, 24, 24) and item["caption"] == "bands of colour"
    image = item["image"]
    # No crop: the whole 60x20 image squeezed, so red on the left and blue on the right.
    assert image[0, 12, 0] > 0.9 and image[2, 12, 23] > 0.9 and image[1, 12, 12] > 0.9
    cropped = CocoCaptions(coco2014, "train2014", 24, random_flip=False, center_crop=True)[1]
    # Centre square of the 60x20 image is the green band only (edges blurred by JPEG).
    centre = cropped["image"][:, :, 3:-3]
    assert centre[1].min() > 0.9 and centre[0].max() < 0.1 and centre[2].max() < 0.1


def test_coco2017_names(tmp_path: Path) -> None:
    names = {139: "000000000139.jpg"}
    _write_coco(tmp_path, "val2017", names, {139: ["a", "b"]}, {139: _bands(20, 20, [GREEN])})
    dataset = CocoCaptions(tmp_path, "val2017", 8)
    assert dataset.records[0].path == tmp_path / "val2017" / "000000000139.jpg"
    assert dataset[0]["caption"] in ("a", "b") and dataset[0]["image_id"] == 139


def test_draws_are_reproducible_per_seed_epoch_index(coco2014: Path) -> None:
    def draws(seed: int, epoch: int) -> list[tuple[str, bytes]]:
        dataset = CocoCaptions(coco2014, "train2014", 16, seed=seed)
        dataset.set_epoch(epoch)
        return [(dataset[0]["caption"], dataset[0]["image"].numpy().tobytes()) for _ in range(2)]

    first = [draws(0, epoch) for epoch in range(12)]
    assert first == [draws(0, epoch) for epoch in range(12)]
    assert all(pair[0] == pair[1] for pair in first)  # same index, same draw
    assert len({pair[0] for pair in first}) > 3  # epochs draw different captions/flips
    assert first != [draws(1, epoch) for epoch in range(12)]


def test_flip_mirrors_image_and_swaps_left_right(coco2014: Path) -> None:
    dataset = CocoCaptions(coco2014, "train2014", 16)
    plain = CocoCaptions(coco2014, "train2014", 16, swap_left_right_on_flip=False)
    seen = set()
    for epoch in range(40):
        dataset.set_epoch(epoch)
        plain.set_epoch(epoch)
        item = dataset[0]
        flipped = bool(item["image"][2, 8, 0] > 0.9)  # blue on the left: mirrored
        assert flipped == bool(item["image"][0, 8, 15] > 0.9)
        if plain[0]["caption"] == "A man to the left.":
            assert item["caption"] == ("A man to the right." if flipped else "A man to the left.")
            seen.add(flipped)
    assert seen == {True, False}


def test_swap_left_right_words_only() -> None:
    assert swap_left_right("a red circle left of a blue square") == (
        "a red circle right of a blue square"
    )
    assert swap_left_right("Right, LEFT and left-handed bright lefty") == (
        "Left, RIGHT and right-handed bright lefty"
    )


def test_missing_or_malformed_annotations(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="captions_train.json"):
        CocoCaptions(tmp_path, "train", 8)
    (tmp_path / "annotations").mkdir()
    path = tmp_path / "annotations" / "captions_train.json"
    one_image = '"images": [{"id": 1, "file_name": "a.png"}]'
    for text, message in [
        ("{not json", "malformed json"),
        ("[]", "json object"),
        ('{"images": []}', "'annotations'"),
        ('{"images": [{"id": 1}], "annotations": []}', "file_name"),
        (
            "{" + one_image + ', "annotations": [{"image_id": 2, "caption": "x"}]}',
            "unknown image_id",
        ),
        ("{" + one_image + ', "annotations": [{"image_id": 1}]}', "caption"),
    ]:
        path.write_text(text)
        with pytest.raises(DatasetError, match=message) as error:
            CocoCaptions(tmp_path, "train", 8)
        assert "captions_train.json" in str(error.value)
    assert issubclass(DatasetError, ValueError)


def test_missing_images_reported_at_construction(coco2014: Path) -> None:
    (coco2014 / "train2014" / "COCO_train2014_000000000025.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 image file\(s\).*COCO_train2014_000000000025"):
        CocoCaptions(coco2014, "train2014", 8)
    for name in (coco2014 / "train2014").iterdir():
        name.unlink()
    (coco2014 / "train2014").rmdir()
    with pytest.raises(DatasetError, match="image folder not found"):
        CocoCaptions(coco2014, "train2014", 8)


def test_corrupt_image_raises_or_is_skipped(coco2014: Path) -> None:
    bad = coco2014 / "train2014" / "COCO_train2014_000000000009.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match="COCO_train2014_000000000009"):
        CocoCaptions(coco2014, "train2014", 8)[0]
    dataset = CocoCaptions(coco2014, "train2014", 8, skip_bad=True)
    assert dataset[0]["image_id"] == 25 and dataset[0]["index"] == 1
    assert dataset.skipped == 1
    assert dataset[1]["image_id"] == 25 and dataset.skipped == 1
    (coco2014 / "train2014" / "COCO_train2014_000000000025.jpg").write_bytes(b"")
    fresh = CocoCaptions(coco2014, "train2014", 8, skip_bad=True)
    with pytest.raises(DatasetError, match="no decodable image"):
        fresh[0]
    assert fresh.skipped == 2


def test_load_captions_file_keeps_attributes(shapes_root: Path) -> None:
    records = load_captions_file(
        shapes_root / "annotations" / "captions_val.json", shapes_root / "val"
    )
    assert [r.image_id for r in records] == [10_000_001, 10_000_002]
    assert all(r.attributes["background"] in ("black", "gray", "white") for r in records)
