"""One data contract for every source: COCO, folder, JSONL and shards skip and count the same
bad records by the same reasons (a truncated shard's lost samples and a COCO image listed but
missing included), and `skip_bad=False` (`--strict-data`) makes the first of them a
DatasetError naming the file, for each source alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils.data import IterableDataset

from tests.training.data.conftest import GOOD
from training.data import open_source
from training.data.base import DatasetError
from training.data.prepare import main as prepare_main


def _pass(dataset) -> list[dict]:
    """One epoch's items, as the trainer's loader would take them."""
    if isinstance(dataset, IterableDataset):
        return list(dataset)
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture
def sources(caption_folder: Path, manifest: Path, coco_root: Path, tmp_path: Path) -> dict:
    """The same six good images, one corrupt and one with blank captions, as each source; the
    shards hold the corrupt and the blank records too (written raw, not through xmc-prepare,
    which would have dropped them)."""
    import webdataset as wds

    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.TarWriter(str(shards / "000000.tar")) as writer:
        for path in sorted((caption_folder / "sub").glob("*.*")):
            if path.suffix != ".txt":
                text = path.with_suffix(".txt").read_text()
                writer.write(
                    {"__key__": path.stem, path.suffix[1:]: path.read_bytes(), "txt": text}
                )
    return {"coco": coco_root, "folder": caption_folder, "jsonl": manifest, "shards": shards}


@pytest.mark.parametrize("kind", ["coco", "folder", "jsonl", "shards"])
def test_bad_records_are_skipped_and_counted_by_the_same_reasons(sources, kind) -> None:
    options = {"shuffle_buffer": 0} if kind == "shards" else {}
    dataset = open_source(sources[kind], 24, random_flip=False, **options)
    items = _pass(dataset)
    assert len({item["image_id"] for item in items}) == GOOD
    if kind == "coco":  # COCO counts blank captions one by one, at load
        assert dataset.empty_captions == 2 and dataset.skipped == 1
        return
    counts = dataset.bad.counts()
    assert counts["undecodable_image"] == 1 and counts["empty_caption"] == 1, counts


# the first bad record each source meets, named with its file (and line or key)
FIRST_BAD = {
    "coco": "captions_train2014.json: image 4 (empty.jpg) has an empty caption",
    "folder": "sub/empty.jpg has no non-empty caption (empty_caption",
    "jsonl": "data.jsonl:9: not JSON",  # the malformed line, found when the manifest is read
    "shards": "000000.tar:corrupt: cannot decode image",
}


@pytest.mark.parametrize("kind", ["coco", "folder", "jsonl", "shards"])
def test_strict_data_makes_the_first_bad_record_fatal_naming_the_file(sources, kind) -> None:
    # before: JSONL, folder and shards trained on, skipping (docs said: fatal)
    options = {"shuffle_buffer": 0} if kind == "shards" else {}
    with pytest.raises(DatasetError) as error:
        _pass(open_source(sources[kind], 24, skip_bad=False, **options))
    message = str(error.value)
    assert "\n" not in message and FIRST_BAD[kind] in message, message


def test_a_coco_image_listed_but_missing_is_skipped_and_counted_unless_strict(coco_root) -> None:
    missing = coco_root / "train2014" / "gray.jpg"
    missing.unlink()
    # before: fatal even without strict_data ("1 image file(s) listed ... are missing")
    dataset = open_source(coco_root, 24, random_flip=False)
    assert dataset.missing_images == 1 and dataset.load_skipped == 1 + dataset.empty_captions
    assert missing not in [record.path for record in dataset.records]
    assert len({item["image_id"] for item in _pass(dataset)}) == GOOD - 1
    path = coco_root / "annotations" / "captions_train2014.json"
    payload = json.loads(path.read_text())  # blank captions out: the missing file comes first
    payload["annotations"] = [a for a in payload["annotations"] if a["caption"].strip()]
    path.write_text(json.dumps(payload))
    with pytest.raises(DatasetError, match="missing, the first: .*gray.jpg"):
        open_source(coco_root, 24, skip_bad=False)


def test_a_truncated_shard_counts_every_sample_it_lost(caption_folder: Path, tmp_path) -> None:
    import shutil

    for k in range(5):  # 36 good images: enough members for a cut in the middle
        shutil.copytree(caption_folder / "sub", caption_folder / f"copy{k}")
    out = tmp_path / "shards"
    args = [str(caption_folder), str(out), "--resolution", "24", "--quiet", "--workers", "1"]
    assert prepare_main([*args, "--shard-size", "12"]) == 0
    shard = out / "000001.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    dataset = open_source(out, 24, shuffle_buffer=0)
    items = _pass(dataset)
    counts = dataset.bad.counts()
    lost = 36 - len(items)
    assert 0 < lost < 12
    # before: the samples after the cut were gone uncounted (1 malformed record at most)
    assert counts["unreadable_shard"] + counts["malformed_record"] == lost, counts
    assert sum(item["skipped"] for item in items) == lost  # what the trainer counts
    with pytest.raises(DatasetError, match=r"000001.tar"):
        _pass(open_source(out, 24, shuffle_buffer=0, skip_bad=False))
    summary = json.loads((out / "prepare.json").read_text())  # where the loader reads 12 from
    assert summary["shard_samples"] == {"000000.tar": 12, "000001.tar": 12, "000002.tar": 12}
