"""xmc-prepare writes img2dataset-layout shards; ShardCaptions splits them across ranks and
workers, skips bad samples, and resumes at a recorded position."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tests.training.data.conftest import GOOD
from training.data import open_source
from training.data.base import DatasetError
from training.data.prepare import main as prepare_main
from training.data.shards import ShardCaptions, expand_shards


def _jpeg(seed: int, size: tuple[int, int] = (20, 20)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_shards(folder: Path, shards: int, per_shard: int) -> Path:
    """`shards` tars of `per_shard` samples with keys 0, 1, ... (webdataset's writer)."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(folder / "%06d.tar"), maxcount=per_shard, verbose=0) as writer:
        for n in range(shards * per_shard):
            writer.write({"__key__": f"{n:09d}", "jpg": _jpeg(n), "txt": f"sample {n}"})
    return folder


def _ids(dataset, **loader) -> list[int]:
    loader.setdefault("batch_size", 1)
    return [int(i) for b in DataLoader(dataset, **loader) for i in b["image_id"]]


def test_prepare_then_train_from_each_source(
    caption_folder: Path, manifest: Path, coco_root: Path, tmp_path: Path
) -> None:
    for name, source in (("folder", caption_folder), ("jsonl", manifest), ("coco", coco_root)):
        out = tmp_path / f"shards-{name}"
        code = prepare_main(
            [str(source), str(out), "--resolution", "24", "--shard-size", "4", "--quiet"]
            + ["--workers", "2" if name == "coco" else "1"]
        )
        assert code == 0
        summary = json.loads((out / "prepare.json").read_text())
        assert summary["samples"] == GOOD and summary["skipped"]["undecodable_image"] == 1
        assert summary["shards"] == ["000000.tar", "000001.tar"]
        with tarfile.open(out / "000000.tar") as tar:
            members = tar.getmembers()
        names = sorted(member.name for member in members)
        assert names[:3] == ["000000000.jpg", "000000000.json", "000000000.txt"]
        # plain ustar members: no PAX header for every reader to parse (a float mtime made one)
        assert all(not member.pax_headers for member in members)
        dataset = open_source(out, 24, shuffle_buffer=0, random_flip=False)
        items = list(dataset)
        assert len(items) == GOOD and dataset.skipped == 0
        assert all(item["image"].shape == (3, 24, 24) for item in items)
        assert set(items[0]) == {"image", "caption", "image_id", "index", "skipped", "stream"}


def test_prepared_pixels_match_the_map_loader(caption_folder: Path, tmp_path: Path) -> None:
    prepare_main([str(caption_folder), str(tmp_path / "s"), "--resolution", "24", "--quiet"])
    prepare_main(
        [str(caption_folder), str(tmp_path / "p"), "--resolution", "24", "--quiet"]
        + ["--format", "png"]
    )
    folder = open_source(caption_folder, 24, random_flip=False)
    png = {i["image_id"]: i["image"] for i in open_source(tmp_path / "p", 24, random_flip=False)}
    jpg = {i["image_id"]: i["image"] for i in open_source(tmp_path / "s", 24, random_flip=False)}
    for item in (folder[i] for i in range(len(folder))):
        if item["image_id"] in png:  # lossless: the very pixels of the map-style loader
            assert torch.equal(png[item["image_id"]], item["image"])
            # JPEG q95 of pure noise at 24 px: close, not equal
            assert (jpg[item["image_id"]] - item["image"]).abs().mean() < 0.15


def test_bad_samples_are_skipped_and_counted(tmp_path: Path) -> None:
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "mixed.tar")) as writer:
        writer.write({"__key__": "good", "jpg": _jpeg(0), "txt": "fine"})
        writer.write({"__key__": "broken", "jpg": b"\xff\xd8 truncated", "txt": "x"})
        writer.write({"__key__": "silent", "jpg": _jpeg(1), "txt": "  \n "})
        writer.write({"__key__": "textless", "png": _jpeg(2)})
    dataset = ShardCaptions(tmp_path / "mixed.tar", 16, shuffle_buffer=0)
    assert len(list(dataset)) == 1
    counts = dataset.bad.counts()
    assert counts["undecodable_image"] == counts["empty_caption"] == 1
    assert counts["malformed_record"] == 1


def test_ranks_and_workers_read_disjoint_shards(tmp_path: Path) -> None:
    folder = _write_shards(tmp_path / "s", shards=8, per_shard=3)
    pattern = str(folder / "{000000..000007}.tar")
    assert len(expand_shards(pattern)) == 8
    seen = []
    for rank in (0, 1):
        dataset = ShardCaptions(pattern, 16, rank=rank, world_size=2, shuffle_buffer=4)
        seen.append(_ids(dataset, num_workers=2, batch_size=3))
    assert len(seen[0]) == len(seen[1]) == 12
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(24))


def test_too_few_shards_is_a_clear_error(tmp_path: Path) -> None:
    folder = _write_shards(tmp_path / "s", shards=1, per_shard=2)
    with pytest.raises(DatasetError, match="cannot feed 2 rank"):
        list(ShardCaptions(folder, 16, rank=0, world_size=2))


def test_resume_replays_the_uninterrupted_stream(tmp_path: Path) -> None:
    folder = _write_shards(tmp_path / "s", shards=4, per_shard=6)
    loader = {"num_workers": 2, "batch_size": 2, "drop_last": True}
    dataset = ShardCaptions(folder, 16, seed=5, shuffle_buffer=4)
    dataset.set_epoch(3)
    full = [b["image_id"].tolist() for b in DataLoader(dataset, **loader)]
    assert len(full) == 12
    # 5 batches consumed: worker 0 gave batches 0, 2, 4 (6 items), worker 1 batches 1, 3
    dataset.resume_at(3, positions=[6, 4], first=5)
    resumed = [b["image_id"].tolist() for b in DataLoader(dataset, **loader)]
    assert resumed == full[5:]
    dataset.set_epoch(4)
    assert [b["image_id"].tolist() for b in DataLoader(dataset, **loader)] != full
    dataset.resume_at(3, positions=[6, 4], first=5)
    with pytest.raises(DatasetError, match="same num_workers"):
        next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))


def _stream(folder: Path, batch: int, workers: int):
    from training.data.stream import DataStream
    from training.distributed import DistInfo

    dataset = ShardCaptions(folder, 16, seed=2, shuffle_buffer=4)
    return DataStream(dataset, batch, seed=2, info=DistInfo(), num_workers=workers)


def _resumed(folder: Path, stopped, batch: int, workers: int):
    """A new stream at `stopped`'s position, as a checkpoint restores it."""
    stream = _stream(folder, batch, workers)
    stream.epoch, stream.image_in_epoch = stopped.epoch, stopped.image_in_epoch
    if hasattr(stopped, "stream_positions"):  # kept since the epoch-end fix
        stream.stream_positions = list(stopped.stream_positions)
    return stream


def _ids_of(batches, count: int) -> list[list[int]]:
    return [next(batches)["image_id"].tolist() for _ in range(count)]


@pytest.mark.parametrize(
    ("workers", "batch", "per_epoch"),
    [(0, 8, 3), (0, 10, 2), (2, 4, 6), (2, 5, 4)],  # 24 samples: 10 and 5 leave a remainder
)
def test_a_stream_stopped_at_an_epoch_end_resumes_with_the_next_epoch(
    tmp_path: Path, workers: int, batch: int, per_epoch: int
) -> None:
    folder = _write_shards(tmp_path / "s", shards=4, per_shard=6)
    straight = _ids_of(_stream(folder, batch, workers).batches(), 2 * per_epoch)
    stopped = _stream(folder, batch, workers)
    batches = stopped.batches()
    first = _ids_of(batches, per_epoch)  # the whole of epoch 0: the position is its end
    batches.close()
    assert first == straight[:per_epoch] and stopped.epoch == 0
    # before the fix: "an epoch of the shards gave no batch of N images"
    again = _ids_of(_resumed(folder, stopped, batch, workers).batches(), per_epoch)
    assert again == straight[per_epoch:]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_size_change_on_resume_repeats_and_skips_no_sample(
    tmp_path: Path, workers: int
) -> None:
    folder = _write_shards(tmp_path / "s", shards=4, per_shard=6)
    stopped = _stream(folder, 4, workers)
    batches = stopped.batches()
    seen = [i for b in _ids_of(batches, 3) for i in b]
    batches.close()
    resumed = _resumed(folder, stopped, 2, workers)  # the rest of epoch 0 in batches of 2
    rest = resumed.batches()
    while resumed.epoch == 0:
        seen += next(rest)["image_id"].tolist()
    rest.close()
    assert sorted(seen[:-2]) == list(range(24))  # the last batch taken is epoch 1's first


def test_rank_and_world_come_from_torchrun_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _write_shards(tmp_path / "s", shards=2, per_shard=2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    dataset = ShardCaptions(folder, 16, shuffle_buffer=0)
    assert (dataset.rank, dataset.world_size) == (1, 2)
    other = ShardCaptions(folder, 16, shuffle_buffer=0, rank=0)
    assert not set(_ids(dataset)) & set(_ids(other))


def test_uint8_items_become_the_float_batch_exactly(tmp_path: Path) -> None:
    from training.data.base import float_images

    folder = _write_shards(tmp_path / "s", shards=2, per_shard=4)
    options = {"shuffle_buffer": 0, "seed": 1}
    floats = next(iter(DataLoader(ShardCaptions(folder, 16, **options), batch_size=4)))
    raw = next(iter(DataLoader(ShardCaptions(folder, 16, pixels="uint8", **options), batch_size=4)))
    assert raw["image"].dtype == torch.uint8
    assert torch.equal(float_images(raw)["image"], floats["image"])
    assert raw["caption"] == floats["caption"]  # same flips, same captions
    with pytest.raises(DatasetError, match="pixels"):
        ShardCaptions(folder, 16, pixels="half")


def test_two_gloo_processes_read_disjoint_shards(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    folder = _write_shards(tmp_path / "s", shards=4, per_shard=2)
    worker = Path(__file__).with_name("gloo_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[3]), env.get("PYTHONPATH", "")])
    outs = [tmp_path / f"rank{r}.json" for r in (0, 1)]
    args = [str(tmp_path / "init"), str(folder)]
    processes = [
        subprocess.Popen([sys.executable, str(worker), str(r), "2", *args, str(outs[r])], env=env)
        for r in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    seen = [json.loads(out.read_text()) for out in outs]
    assert [s["rank"] for s in seen] == [0, 1]
    assert len(seen[0]["ids"]) == len(seen[1]["ids"]) == 4
    assert sorted(seen[0]["ids"] + seen[1]["ids"]) == list(range(8))
