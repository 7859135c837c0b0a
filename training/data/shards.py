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

An item's `index` is its position (from 0) in its (rank, worker) stream of the epoch.

Resuming (`resume_at(epoch, batches, batch_size, num_workers)`). The trainer records the
epoch and the number of batches it has consumed in it on this rank. A DataLoader over an
IterableDataset takes its batches from the workers in turn, so worker k has delivered
ceil((batches - k) / K) batches; on resume each worker re-reads its stream from the start
of the epoch and drops that many items x batch_size before yielding (the new DataLoader's
worker j continues the stream of worker (j + batches) mod K, so batches keep their order).
Exactly what happens:
- nothing is repeated or skipped when the world size, worker count and batch size are the
  same as when the position was recorded and every worker of the rank still had data at
  that point (all of an epoch but its tail);
- in the tail, after a worker of the rank has run out of shards, the DataLoader goes on
  with the others, so the recorded count under-estimates what they delivered: up to
  (K - 1) x (batches delivered after the first worker ran out) batches are repeated, and
  none is skipped;
- batches that workers had prefetched but the trainer had not consumed are delivered
  again (they were never trained on), and each worker's last incomplete batch of an
  epoch is dropped, as with `drop_last=True`;
- the dropped prefix is decoded again (bad records must be recognised to count the same
  items), so resuming late in an epoch costs that part of the epoch's decoding time.
"""

from __future__ import annotations

import json
import math
import os
import random
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from training.data.coco import DatasetError
from training.data.records import (
    BadRecords,
    ItemOptions,
    caption_lines,
    decode_image_bytes,
    make_item,
)

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
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


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
    ) -> None:
        self.urls = expand_shards(shards)
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
        self.bad = BadRecords()
        self.epoch = 0
        self._resume: tuple[int, int, int] | None = None  # (batches, batch_size, workers)

    @property
    def skipped(self) -> int:
        return self.bad.total

    def set_epoch(self, epoch: int) -> None:
        """Call before building each epoch's DataLoader iterator (workers copy the dataset)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch, self._resume = epoch, None

    def resume_at(self, epoch: int, batches: int, batch_size: int, num_workers: int) -> None:
        """Start the next iterator after `batches` consumed batches of `epoch` (module doc)."""
        if min(batches, num_workers) < 0 or batch_size < 1:
            raise ValueError(f"bad resume position {batches=} {batch_size=} {num_workers=}")
        self.set_epoch(epoch)
        self._resume = (batches, batch_size, num_workers)

    def shards_of(self, worker: int, workers: int) -> list[str]:
        """This rank's and worker's shards for the current epoch, in reading order."""
        order = list(self.urls)
        random.Random(f"shards/{self.options.seed}/{self.epoch}").shuffle(order)
        readers = self.world_size * workers
        if len(order) < readers:
            raise DatasetError(
                f"{len(order)} shard(s) cannot feed {self.world_size} rank(s) x {workers} "
                "worker(s): write smaller shards or use fewer workers"
            )
        return order[self.rank :: self.world_size][worker::workers]

    def _role(self, worker: int, workers: int) -> tuple[int, int]:
        """(the original worker whose stream this worker continues, items to drop).

        A new DataLoader starts with worker 0, but after `batches` batches the next one
        was due from worker `batches % K`: worker k takes over the stream of worker
        (k + batches) % K, so the resumed batches come in the uninterrupted order.
        """
        if self._resume is None:
            return worker, 0
        batches, batch_size, recorded_workers = self._resume
        slots = max(workers, 1)  # 0 workers (the main process) is one stream, as 1 worker
        if max(recorded_workers, 1) != slots:
            raise DatasetError(
                f"the position was recorded with {recorded_workers} worker(s), "
                f"this loader has {workers}: resume with the same num_workers"
            )
        role = (worker + batches) % slots
        return role, math.ceil(max(batches - role, 0) / slots) * batch_size

    def _decode(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        key = str(sample.get("__key__", "?"))
        where = f"{sample.get('__url__', '?')}:{key}"
        data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if data is None or "txt" not in sample:
            self.bad.add("malformed_record", f"{where} lacks an image or a .txt")
            return None
        captions = caption_lines(sample["txt"].decode("utf-8", errors="replace"))
        if not captions:
            self.bad.add("empty_caption", where)
            return None
        try:
            image = decode_image_bytes(data)
        except DatasetError as error:
            self.bad.add("undecodable_image", f"{where}: {error}")
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
        self.bad.add("unreadable_shard", repr(error))
        return True  # webdataset: go on with the next sample or shard

    def raw_samples(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        """The undecoded samples of this reader, after the seeded shuffle buffer."""
        import webdataset as wds

        stages = [
            wds.SimpleShardList(self.shards_of(worker, max(workers, 1))),
            wds.tarfile_to_samples(handler=self._unreadable),
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
        for sample in self.raw_samples(role, workers):
            decoded = self._decode(sample)
            if decoded is None:
                passed += 1
                continue
            index += 1
            if index <= skip:
                passed = 0
                continue
            yield make_item(
                decoded["image"],
                decoded["captions"],
                decoded["rng"],
                self.options,
                decoded["image_id"],
                index - 1,
                passed,
            )
            passed = 0
