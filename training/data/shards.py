"""Web-scale training data: tar shards in the format img2dataset writes, read with webdataset.

A shard is a tar of samples that share a key: `KEY.jpg` (or .jpeg/.png/.webp), `KEY.txt`
(the caption; several lines = several captions, one drawn per access) and optionally
`KEY.json` (its `image_id` is used when it is an integer). `xmc-prepare` writes the same
layout, so CC3M/CC12M fetched with img2dataset train as they are.

Splitting. An epoch reads every shard once. Its shard order is a permutation seeded by
(seed, epoch); rank r of W takes shards r, r + W, ... of it (rank and world from explicit
arguments, else `torch.distributed`, else torchrun's RANK/WORLD_SIZE), and DataLoader worker
k of K takes every K-th of those. Ranks and workers therefore read disjoint shards; there
must be at least W x K shards. Inside a worker, samples pass a shuffle buffer seeded by
(seed, epoch, rank, worker), and each sample's caption and flip come from an RNG seeded by
(seed, epoch, key): the stream of every (rank, worker) is a pure function of the position.

An item's `index` is its position (from 0) in its (rank, worker) stream of the epoch and its
`stream` the number of that stream (the worker that read it, 0 to K - 1).

Resuming (`resume_at(epoch, positions, first)`). The trainer records, for each stream of this
rank, how many of its items it has consumed in the epoch (one past the highest `index` it
took from that stream). On resume each stream is re-read from the start of the epoch and
that many items are dropped before it yields; the new DataLoader's worker j reads stream
(j + first) mod K, `first` being the number of batches consumed, so that batches come in the
uninterrupted order. Exactly what happens:
- nothing is repeated or skipped, at any point of an epoch (its tail included, where some
  workers have run out of shards) and at its very end (the resumed epoch then yields
  nothing and the next one starts), whatever the batch size of the resumed run: positions
  count items, not batches;
- batches that workers had prefetched but the trainer had not consumed are delivered
  again (they were never trained on), and each stream's last incomplete batch of an
  epoch is dropped, as with `drop_last=True`;
- the batches come in the uninterrupted order when the batch size is unchanged and every
  stream still had data; otherwise the same items come, possibly in another order;
- the worker count must be the one recorded (streams are split by it); the trainer fits
  it to the shards (`usable_workers`) the same way on every start;
- the dropped prefix is decoded again (bad records must be recognised to count the same
  items), so resuming late in an epoch costs that part of the epoch's decoding time.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from training.data.base import DatasetError, ItemOptions, decode_image_bytes, make_item
from training.data.records import BadRecords, caption_lines
from training.faults import one_line

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def expand_shards(spec: str | Path | Sequence[str | Path]) -> list[str]:
    """Shard paths of a spec: a .tar path, a brace pattern (`data/{000000..000099}.tar`),
    a folder of .tar files, or several of these joined by `::` or given as a list."""
    from braceexpand import braceexpand

    parts = [str(s) for s in spec] if isinstance(spec, (list, tuple)) else str(spec).split("::")
    urls: list[str] = []
    for part in parts:
        if not _is_remote(part) and Path(part).is_dir():
            urls.extend(str(p) for p in sorted(Path(part).glob("*.tar")))
        else:
            urls.extend(braceexpand(part))
    if not urls:
        raise DatasetError(f"no shards in {spec!r}")
    missing = [url for url in urls if not _is_remote(url) and not Path(url).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} shard(s) not found, the first: {missing[0]}")
    return urls


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed, else torchrun's environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    from training.distributed import launch_env

    env = launch_env()
    return env.rank, env.world_size


def expected_samples(urls: Sequence[str]) -> dict[str, int]:
    """Samples per local shard, from the `prepare.json` that xmc-prepare writes beside its
    shards ({"shard_samples": {name: count}}); shards without one are not in the result."""
    counts: dict[str, int] = {}
    folders = {Path(url).parent for url in urls if not _is_remote(url)}
    for folder in folders:
        try:
            written = json.loads((folder / "prepare.json").read_text()).get("shard_samples", {})
        except (OSError, ValueError, AttributeError):
            continue
        for name, count in written.items() if isinstance(written, dict) else ():
            if isinstance(count, int):
                counts[str(folder / name)] = count
    return {url: counts[url] for url in urls if url in counts}


def _key_number(key: str) -> int:
    return int(key) if key.isdigit() else zlib.crc32(key.encode("utf-8"))


class ShardCaptions(IterableDataset):
    """Samples of tar shards as `CocoCaptions` items, split across ranks and workers."""

    def __init__(
        self,
        shards: str | Path | Sequence[str | Path],
        resolution: int,
        *,
        center_crop: bool = False,
        random_flip: bool = True,
        swap_left_right_on_flip: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        pixels: str = "float",
        rank: int | None = None,
        world_size: int | None = None,
        skip_bad: bool = True,
    ) -> None:
        self.urls = expand_shards(shards)
        self.skip_bad = skip_bad
        self.expected = expected_samples(self.urls)
        self.options = ItemOptions(
            resolution,
            center_crop=center_crop,
            random_flip=random_flip,
            swap_left_right_on_flip=swap_left_right_on_flip,
            seed=seed,
            pixels=pixels,
        )
        self.resolution = resolution
        found_rank, found_world = distributed_rank()
        self.rank = found_rank if rank is None else rank
        self.world_size = found_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise DatasetError(f"rank must be in [0, {self.world_size}), got {self.rank}")
        if shuffle_buffer < 0:
            raise DatasetError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.shuffle_buffer = shuffle_buffer
        self.bad = BadRecords(fatal=not skip_bad)
        self.epoch = 0
        self._resume: tuple[tuple[int, ...], int] | None = None  # (positions, first)
        self._pending = 0  # bad samples counted but not yet reported in an item's `skipped`
        self._unknown_counts = True  # a shard of this reader has no known sample count

    @property
    def skipped(self) -> int:
        return self.bad.total

    def set_epoch(self, epoch: int) -> None:
        """Call before building each epoch's DataLoader iterator (workers copy the dataset)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch, self._resume = epoch, None

    def resume_at(self, epoch: int, positions: Sequence[int], first: int = 0) -> None:
        """Start the next iterator of `epoch` after `positions[k]` items of stream k, worker
        0 reading stream `first` mod K (module doc). `positions` has one entry per stream:
        max(num_workers, 1)."""
        if first < 0 or not positions or min(positions) < 0:
            raise ValueError(f"bad resume position {list(positions)} {first=}")
        self.set_epoch(epoch)
        self._resume = (tuple(int(p) for p in positions), first)

    def shards_of(self, worker: int, workers: int) -> list[str]:
        """This rank's and worker's shards for the current epoch, in reading order."""
        order = list(self.urls)
        random.Random(f"shards/{self.options.seed}/{self.epoch}").shuffle(order)
        readers = self.world_size * workers
        if len(order) < readers:
            raise DatasetError(
                f"{len(order)} shard(s) cannot feed {self.world_size} rank(s) x {workers} "
                "worker(s): lower --num-workers, or write smaller shards "
                "(xmc-prepare --shard-size)"
            )
        return order[self.rank :: self.world_size][worker::workers]

    def usable_workers(self, wanted: int) -> int:
        """The DataLoader workers this rank's shards can feed: `wanted`, or fewer when the
        rank has fewer shards than that (a worker reads whole shards). DatasetError naming
        the flag to change when the rank has none."""
        mine = len(self.urls[self.rank :: self.world_size])
        if mine < 1:
            raise DatasetError(
                f"{len(self.urls)} shard(s) cannot feed {self.world_size} ranks: write at "
                f"least {self.world_size} shards (xmc-prepare --shard-size)"
            )
        return min(wanted, mine) if wanted > 0 else 0

    def _role(self, worker: int, workers: int) -> tuple[int, int]:
        """(the stream this worker reads, items of it to drop).

        A new DataLoader starts with worker 0, but after `first` batches the next one was
        due from worker `first % K`: worker k reads stream (k + first) % K, so the resumed
        batches come in the uninterrupted order.
        """
        if self._resume is None:
            return worker, 0
        positions, first = self._resume
        slots = max(workers, 1)  # 0 workers (the main process) is one stream, as 1 worker
        if len(positions) != slots:
            raise DatasetError(
                f"the position was recorded with {len(positions)} loader stream(s), this "
                f"loader has {slots}: resume with the same num_workers"
            )
        role = (worker + first) % slots
        return role, positions[role]

    def _skip(self, reason: str, what: str, count: int = 1) -> None:
        """Count `count` bad samples (reported in the next item's `skipped`), or with
        skip_bad off (--strict-data) stop at the first, naming the shard and sample."""
        self.bad.add(reason, what, count)
        self._pending += count

    def _decode(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        key = str(sample.get("__key__", "?"))
        where = f"{sample.get('__url__', '?')}:{key}"
        data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if data is None or "txt" not in sample:
            self._skip("malformed_record", f"{where} lacks an image or a .txt")
            return None
        captions = caption_lines(sample["txt"].decode("utf-8", errors="replace"))
        if not captions:
            self._skip("empty_caption", f"{where} has no non-empty caption")
            return None
        try:
            image = decode_image_bytes(data)
        except DatasetError as error:
            self._skip("undecodable_image", f"{where}: {error}")
            return None
        rng = np.random.default_rng((self.options.seed, self.epoch, zlib.crc32(key.encode())))
        image_id = self._image_id(sample, key)
        return {"image": image, "captions": captions, "image_id": image_id, "rng": rng}

    @staticmethod
    def _image_id(sample: dict[str, Any], key: str) -> int:
        try:
            meta = json.loads(sample["json"]) if "json" in sample else {}
        except (ValueError, UnicodeDecodeError):
            meta = {}
        value = meta.get("image_id") if isinstance(meta, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else _key_number(key)

    def _unreadable(self, error: Exception) -> bool:
        """webdataset's handler for a shard that cannot be read on. A shard whose sample
        count is known (prepare.json) has its lost samples counted when it ends
        (`_counted`); any other counts once here."""
        if not self.skip_bad or self._unknown_counts:
            self._skip("unreadable_shard", f"unreadable shard: {one_line(error)}")
        return True  # webdataset: go on with the next sample or shard

    def _counted(
        self, samples: Iterator[dict[str, Any]], urls: list[str]
    ) -> Iterator[dict[str, Any]]:
        """The samples as read, each shard's shortfall from its known sample count counted
        as `unreadable_shard` when the next shard starts (a truncated tar ends early)."""
        seen = dict.fromkeys(urls, 0)
        done = 0

        def finish(until: int) -> None:
            nonlocal done
            for url in urls[done:until]:
                lost = self.expected.get(url, 0) - seen[url]
                if lost > 0:
                    count = self.expected[url]
                    what = f"{url}: {lost} of its {count} samples could not be read (truncated?)"
                    self._skip("unreadable_shard", what, lost)
            done = max(done, until)

        for sample in samples:
            url = sample.get("__url__")
            if url in seen:
                finish(urls.index(url, done) if url in urls[done:] else done)
                seen[url] += 1
            yield sample
        finish(len(urls))

    def raw_samples(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        """The undecoded samples of this reader, after the seeded shuffle buffer."""
        import webdataset as wds

        urls = self.shards_of(worker, max(workers, 1))
        self._unknown_counts = any(url not in self.expected for url in urls)
        stages = [
            wds.SimpleShardList(urls),
            wds.tarfile_to_samples(handler=self._unreadable),
            lambda samples: self._counted(samples, urls),
        ]
        if self.shuffle_buffer > 1:
            seed = f"buffer/{self.options.seed}/{self.epoch}/{self.rank}/{worker}"
            size = self.shuffle_buffer
            stages.append(wds.shuffle(size, initial=size, rng=random.Random(seed)))
        return iter(wds.DataPipeline(*stages))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 0)
        role, skip = self._role(worker, workers)
        index = passed = 0  # passed: bad samples since the last item
        self._pending = 0
        for sample in self.raw_samples(role, workers):
            decoded = self._decode(sample)
            passed, self._pending = passed + self._pending, 0
            if decoded is None:
                continue
            index += 1
            if index <= skip:
                passed = 0
                continue
            item = make_item(
                decoded["image"],
                decoded["captions"],
                decoded["rng"],
                self.options,
                decoded["image_id"],
                index - 1,
                passed,
            )
            item["stream"] = role
            yield item
            passed = 0
