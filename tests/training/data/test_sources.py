"""Folder, JSONL and COCO sources through `open_source`: one item interface, bad records
skipped and counted, exact per-epoch reproducibility."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tests.training.data.conftest import GOOD
from training.data import open_source, source_kind
from training.data.base import DatasetError

ITEM_KEYS = {"image", "caption", "image_id", "index", "skipped"}


def _check_items(dataset, resolution: int = 24, captions: bool = True) -> list[dict]:
    items = [dataset[i] for i in range(len(dataset))]
    for item in items:
        assert set(item) == ITEM_KEYS
        assert item["image"].shape == (3, resolution, resolution)
        assert item["image"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert isinstance(item["caption"], str) and (item["caption"].strip() or not captions)
    return items


def test_the_kind_follows_the_path(
    caption_folder: Path, manifest: Path, coco_root: Path, tmp_path: Path
) -> None:
    assert source_kind(caption_folder) == "folder"
    assert source_kind(manifest) == "jsonl"
    assert source_kind(coco_root) == "coco"
    assert source_kind("data/{000000..000009}.tar") == "shards"
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="none of"):
        source_kind(tmp_path / "plain")
    with pytest.raises(DatasetError, match="not found"):
        source_kind(tmp_path / "nowhere")


def test_folder_skips_and_counts_bad_records(caption_folder: Path) -> None:
    dataset = open_source(caption_folder, 24, random_flip=False)
    assert len(dataset) == GOOD + 1  # the corrupt file is only found when decoded
    assert dataset.bad.counts()["empty_caption"] == 1
    items = _check_items(dataset)
    assert dataset.bad.counts()["undecodable_image"] == 1
    assert dataset.skipped == 2
    assert len({item["image_id"] for item in items}) == GOOD  # corrupt -> its successor


def test_folder_draws_every_line_as_a_caption(caption_folder: Path) -> None:
    dataset = open_source(caption_folder, 24, random_flip=False)
    index = next(i for i, r in enumerate(dataset.records) if len(r.captions) == 2)
    seen = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        seen.add(dataset[index]["caption"])
    assert seen == set(dataset.records[index].captions)


def test_jsonl_refuses_paths_outside_its_root(manifest: Path) -> None:
    dataset = open_source(manifest, 24)
    counts = dataset.bad.counts()
    assert counts["outside_root"] == 1 and counts["malformed_record"] == 1
    assert counts["empty_caption"] == 1
    assert all(r.path.resolve().is_relative_to(manifest.parent) for r in dataset.records)
    _check_items(dataset)
    assert dataset.bad.counts()["undecodable_image"] == 1


def test_coco_root_goes_through_cococaptions_with_skipping(coco_root: Path) -> None:
    dataset = open_source(coco_root, 24, split="train2014")
    assert type(dataset).__name__ == "CocoCaptions"
    items = _check_items(dataset)
    assert dataset.skipped == 1 and dataset.empty_captions >= 1  # the corrupt file, blanks
    assert sum(i["skipped"] for i in items) >= 1  # the item that stood in for it says so
    assert {i["image_id"] for i in items} <= {r.image_id for r in dataset.records}


def test_an_epoch_is_reproducible_and_epochs_differ(caption_folder: Path) -> None:
    dataset = open_source(caption_folder, 24, seed=3)
    dataset.set_epoch(1)
    first = [dataset[i] for i in range(len(dataset))]
    again = [dataset[i] for i in range(len(dataset))]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))
    dataset.set_epoch(2)
    other = [dataset[i] for i in range(len(dataset))]
    assert any(not torch.equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True))


def test_worker_skips_reach_the_main_process(caption_folder: Path) -> None:
    dataset = open_source(caption_folder, 24)
    before = dataset.skipped
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert sum(len(b["caption"]) for b in batches) == len(dataset)
    assert dataset.skipped == before + 1  # counted in a worker, read here


def test_shard_options_are_refused_for_map_sources(caption_folder: Path) -> None:
    with pytest.raises(DatasetError, match="shards only"):
        open_source(caption_folder, 24, shuffle_buffer=10)


@pytest.mark.parametrize("kind", ["folder", "jsonl", "coco"])
def test_uint8_items_are_the_float_items_on_the_device(
    kind: str, caption_folder: Path, manifest: Path, coco_root: Path
) -> None:
    from training.data.stream import device_images

    spec = {"folder": caption_folder, "jsonl": manifest, "coco": coco_root}[kind]
    split = {"split": "train2014"} if kind == "coco" else {}
    floats = open_source(spec, 24, seed=3, **split)
    raw = open_source(spec, 24, seed=3, pixels="uint8", **split)
    batch, raw_batch = (next(iter(DataLoader(d, batch_size=3))) for d in (floats, raw))
    assert raw_batch["image"].dtype == torch.uint8
    assert raw_batch["caption"] == batch["caption"]  # the same draws and flips
    images = device_images(raw_batch["image"], torch.device("cpu"))
    assert images.dtype == torch.float32 and torch.equal(images, batch["image"])
    with pytest.raises(DatasetError, match="pixels"):
        open_source(spec, 24, pixels="half", **split)
