"""The endless, resumable stream of training batches: epoch after epoch of a seeded permutation,
this process's share, from a position counted in images.

Counting the position in images (not batches) means a run resumed with another batch size
continues at exactly the next unseen image of the epoch. For shards, where every DataLoader
worker reads a stream of its own, the position is also kept per stream (`stream_positions`:
items consumed from each), so a resume anywhere in an epoch, its end included, repeats and
skips nothing (training.data.shards says exactly what it does).
"""

from __future__ import annotations

import signal
from collections.abc import Generator, Iterator, Sequence, Sized
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from training.data.base import unit_float
from training.distributed import DistInfo
from training.faults import RunError, ignore_interrupt, warn


@runtime_checkable
class ResumableStream(Protocol):
    """An iterable dataset that restarts an epoch after the items of each stream consumed
    (`training.data.shards.ShardCaptions`)."""

    def resume_at(self, epoch: int, positions: Sequence[int], first: int = 0) -> None: ...


def derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class EpochSampler(Sampler):
    """This rank's share of epoch `epoch`'s seeded permutation, from its image `start` on, cut
    to whole batches of `batch`."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, start: int, info: DistInfo):
        self.n, self.batch, self.seed, self.epoch = n, batch, seed, epoch
        self.start, self.info = start, info

    def share(self) -> list[int]:
        order = torch.randperm(
            self.n, generator=torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        )
        return order[self.info.rank :: self.info.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        mine = self.share()
        return iter(mine[self.start : self.start + len(self)])

    def __len__(self) -> int:
        left = max(self.n // self.info.world_size - self.start, 0)
        return left // self.batch * self.batch


def device_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch's images (B, 3, R, R), uint8 or float, on `device` as float in [0, 1]: uint8
    crosses to the device at a quarter of the bytes and is converted there, to the values
    `to_tensor` gives."""
    return unit_float(images.to(device, non_blocking=True))


def shutdown(iterator: Any) -> None:
    """Stop a DataLoader iterator's workers now, not whenever it is garbage-collected: a live
    iterator left behind by an error kept the process from exiting."""
    stop = getattr(iterator, "_shutdown_workers", None)  # torch's own teardown, when it has one
    if stop is not None:
        stop()


def killed_workers(iterator: Any) -> None:
    """Raise the DataLoader's own "worker ... is killed by signal" error when a worker of this
    iterator has died. The DataLoader finds out only when it waits for that worker's next
    batch (and not at all when the worker had delivered all of its batches): a signal to a
    worker alone (an orchestrator signals every process of a job) must stop the run as one
    to the main process does (`training.faults.worker_died`)."""
    for worker in getattr(iterator, "_workers", ()):  # torch's worker processes, when any
        code, pid = worker.exitcode, worker.pid
        if code and code < 0:
            raise RuntimeError(
                f"DataLoader worker (pid {pid}) is killed by signal: {signal.strsignal(-code)}"
            )
        if code:
            raise RuntimeError(f"DataLoader worker (pid {pid}) exited unexpectedly ({code})")


class DataStream:
    """Batches of `batch` images for this rank, from (epoch, image_in_epoch) on, for ever."""

    def __init__(
        self,
        dataset: Dataset,
        batch: int,
        seed: int,
        info: DistInfo,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.batch, self.seed, self.info = dataset, batch, seed, info
        self.pin_memory = pin_memory
        self.num_workers = num_workers
        if isinstance(dataset, IterableDataset) and hasattr(dataset, "usable_workers"):
            # a worker reads whole shards: never more workers than this rank has shards
            self.num_workers = dataset.usable_workers(num_workers)
            if self.num_workers < num_workers:
                warn(
                    f"{self.num_workers} DataLoader worker(s), not {num_workers}: this rank has "
                    f"{self.num_workers} shard(s) (more with xmc-prepare --shard-size)"
                )
        self.epoch, self.image_in_epoch = 0, 0
        # shards: items consumed in this epoch from each worker's stream (module doc)
        self.stream_positions = [0] * max(self.num_workers, 1)
        self._before: tuple[int, int, list[int]] | None = None  # the position before a batch

    def _loader(self) -> DataLoader:
        if isinstance(self.dataset, IterableDataset):
            return self._stream_loader()
        dataset = self.dataset
        if not isinstance(dataset, Sized):
            raise RunError(f"{type(dataset).__name__}: a map-style training dataset needs a len()")
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.epoch)
        sampler = EpochSampler(
            len(dataset), self.batch, self.seed, self.epoch, self.image_in_epoch, self.info
        )
        if len(dataset) // self.info.world_size < self.batch:
            raise RunError(
                f"{len(dataset)} images cannot fill one batch of {self.batch} per process"
            )
        return DataLoader(
            self.dataset,
            batch_size=self.batch,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=False,
            worker_init_fn=ignore_interrupt if self.num_workers else None,
            pin_memory=self.pin_memory,
        )

    def _stream_loader(self) -> DataLoader:
        """Shards: the dataset splits itself across ranks and workers; a resumed epoch restarts
        after the batches already consumed (training.data.shards says what repeats)."""
        if not isinstance(self.dataset, ResumableStream):
            raise RunError(f"{type(self.dataset).__name__}: an iterable dataset needs resume_at()")
        first = self.image_in_epoch // self.batch
        self.dataset.resume_at(self.epoch, self.stream_positions, first)
        return DataLoader(
            self.dataset,
            batch_size=self.batch,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=False,
            worker_init_fn=ignore_interrupt if self.num_workers else None,
            pin_memory=self.pin_memory,
        )

    def positions_after(self, images: int, batch: int) -> list[int]:
        """The per-stream positions of a checkpoint that recorded none (written before they
        were kept): `images` consumed in batches of `batch`, the workers delivering in turn
        (exact unless a worker had run out of shards)."""
        slots, batches = max(self.num_workers, 1), images // max(batch, 1)
        return [-(-max(batches - k, 0) // slots) * batch for k in range(slots)]

    def _advance(self, batch: dict[str, Any]) -> None:
        self._before = (self.epoch, self.image_in_epoch, list(self.stream_positions))
        self.image_in_epoch += self.batch
        if "stream" in batch:  # shards: one past the newest item taken from each stream
            for stream, index in zip(
                batch["stream"].tolist(), batch["index"].tolist(), strict=True
            ):
                self.stream_positions[stream] = max(self.stream_positions[stream], index + 1)

    def untake(self) -> None:
        """Put the position back before the last batch handed out (taken, then not trained
        on): a resume starts with it."""
        if self._before is not None:
            self.epoch, self.image_in_epoch, self.stream_positions = self._before
            self._before = None

    def batches(self) -> Generator[dict[str, Any], None, None]:
        """The position moves past a batch when it is handed out; closing the generator (or an
        error inside it) shuts the workers down at once. A resumed epoch that has nothing
        left (stopped at its end) moves on to the next."""
        while True:
            resumed = self.image_in_epoch > 0
            iterator = iter(self._loader())
            delivered = 0
            try:
                for batch in iterator:
                    killed_workers(iterator)
                    self._advance(batch)
                    delivered += 1
                    yield batch
            finally:
                shutdown(iterator)
            killed_workers(iterator)  # one killed after its last batch: stop all the same
            del iterator
            if not delivered and not resumed and isinstance(self.dataset, IterableDataset):
                raise RunError(
                    f"an epoch of the shards gave no batch of {self.batch} images: each of the "
                    f"{max(self.num_workers, 1)} DataLoader worker(s) batches its own shards; "
                    "lower --batch-size or --num-workers, or add data"
                )
            self.epoch, self.image_in_epoch = self.epoch + 1, 0
            self.stream_positions = [0] * len(self.stream_positions)
