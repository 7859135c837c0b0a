"""Dynamic batching: requests queue per image; the model (`xmc_service.model_host`) takes batches.

An asyncio task forms batches from the queue (full at `max_batch_images`, or once the oldest
image has waited `max_wait_ms`) and hands each to the model, which runs its calls one at a time
in order, in a process of its own or on one thread. Images from different requests share a
batch by concatenating their text features and per-image seeds; the pipeline draws each image's
latent from its own seed on the CPU, so an image does not depend on what it was batched with.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from xmc_service.metrics import Metrics
from xmc_service.model_host import Generated, ModelHost, warmup_sizes

logger = logging.getLogger("xmc_service")


class QueueFull(Exception):
    """The queue cannot take the request's images now; retry after `retry_after_s` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class GeneratedImage(NamedTuple):
    """One image of a request (a tuple: made once per image on the engine's path, where a
    frozen dataclass's __init__ cost three times as much)."""

    pixels: np.ndarray  # (H, W, 3) uint8
    seed: int
    tokens: list[str]  # the caption's tokens as the text encoder read them
    attention: np.ndarray | None  # (T, 16, 16) float32 over the T tokens above, or None


OnDone = Callable[[list[GeneratedImage] | None, BaseException | None], None]


class Listener:
    """A job's outcome handed straight to a callback, for jobs no task awaits (the engine's):
    an asyncio.Future's calls without its done-callback's turn of the loop (about 4 us a
    request). A cancelled job calls nothing: whoever cancelled it answers for it."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: OnDone) -> None:
        self._callback = callback
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        cancelled, self._done = not self._done, True
        return cancelled

    def set_result(self, images: list[GeneratedImage]) -> None:
        self._done = True
        self._callback(images, None)

    def set_exception(self, error: BaseException) -> None:
        self._done = True
        self._callback(None, error)


@dataclass(eq=False, slots=True)
class _Job:
    captions: list[str]  # one per image
    seeds: list[int]  # one per image
    truncation: float
    attention: bool
    future: asyncio.Future[list[GeneratedImage]] | Listener
    enqueued: float = field(default_factory=time.perf_counter)
    # each image's slot, filled as its batch returns; `missing` counts the empty ones
    results: list[GeneratedImage | None] = field(default_factory=list)
    missing: int = 0
    cancelled: bool = False
    # images batch together only when they share the pipeline's call arguments
    key: tuple[float, bool] = (1.0, False)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.captions)
        self.missing = len(self.captions)
        self.key = (self.truncation, self.attention)


class _Item(NamedTuple):
    job: _Job
    position: int  # which of the job's images


def observe_all(histogram: Any, amounts: list[float]) -> None:
    """`histogram.observe(a)` for each amount, as one write per touched bucket (with several
    workers each write is a locked write to a memory-mapped file, 5 us). Leaves exactly what
    observing one by one leaves (tested), which is the fallback without prometheus' parts."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    total.inc(sum(amounts))
    # observe() counts an amount in the first bucket whose bound is >= it (the last is +Inf)
    for index, count in Counter(bisect.bisect_left(bounds, a) for a in amounts).items():
        buckets[min(index, len(buckets) - 1)].inc(count)


class Batcher:
    """Queue + batch former in front of the model; the batcher owns (and closes) `model`."""

    def __init__(
        self,
        model: ModelHost,
        *,
        max_batch_images: int,
        max_wait_ms: float,
        max_queue_images: int,
        metrics: Metrics,
    ) -> None:
        self.model = model
        self.max_batch_images = max_batch_images
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_images = max_queue_images
        self._metrics = metrics
        self._pending: deque[_Item] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()  # handed to the model, not done
        self._running = 0  # batches with the model, running or queued behind (<= 2)
        self._running_jobs: set[_Job] = set()  # the jobs of those batches
        self._model_free_since = time.perf_counter()
        self._seconds_per_image = 0.0
        self._wake_at: float = 1  # queued images that wake the batch former (_wait_for_images)

    @property
    def queued_images(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._form_batches())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        for item in self._pending:
            if not item.job.future.done():
                item.job.future.cancel()
        self._pending.clear()
        self.model.close()

    def fail_queued(self, error: Exception, running: bool = False) -> None:
        """Every queued image's request fails with `error` (the model is gone); with `running`
        also those of the batches the model holds (a stalled model: if it ever answers them,
        the answers are dropped)."""
        jobs = {id(item.job): item.job for item in self._pending}
        if running:
            jobs.update((id(job), job) for job in self._running_jobs)
        self._pending.clear()
        self._metrics.queue_images.set(0)
        for job in jobs.values():
            if not job.future.done():
                job.future.set_exception(error)

    async def set_threads(self, threads: int | None) -> None:
        """The model's intra-op CPU threads (None: the service's default)."""
        await asyncio.wrap_future(self.model.set_threads(threads))

    async def warmup(self) -> None:
        """Forwards at batch 1, 2, 4, ... and the full batch: the first call of a batch size
        builds its kernels (about a forward's time again on the CPU), so no request pays that
        for the common sizes."""
        for size in warmup_sizes(self.max_batch_images):
            logger.info("warm-up forward at batch %d", size)
            await asyncio.wrap_future(self.model.warm(size))

    async def interpolate(
        self, captions: tuple[str, str], seeds: tuple[int, int], frames: int, truncation: float
    ) -> np.ndarray:
        """(frames, H, W, 3) uint8 walking between the two captions and seeds, run by the model
        between batches; it counts as `frames` images against the queue's room."""
        if self.queued_images + frames > self.max_queue_images:
            raise QueueFull(self._retry_after(frames))
        return await asyncio.wrap_future(
            self.model.interpolate(captions, seeds, frames, truncation)
        )

    async def generate(
        self,
        captions: list[str],
        seeds: list[int],
        truncation: float = 1.0,
        attention: bool = False,
    ) -> list[GeneratedImage]:
        """Queue one image per caption/seed pair and wait for all of them.

        Raises QueueFull at once when the queue has no room; cancelling the awaiting task (a
        client that went away) drops the images that have not started yet.
        """
        job = self.submit(captions, seeds, truncation, attention)
        future = job.future
        assert isinstance(future, asyncio.Future)  # submitted without on_done
        try:
            return await future
        except asyncio.CancelledError:
            self._drop(job)
            raise

    def submit(
        self,
        captions: list[str],
        seeds: list[int],
        truncation: float,
        attention: bool,
        on_done: OnDone | None = None,
    ) -> _Job:
        """Queue the images without a task to wait on them (the engine, for other processes'
        requests): the job's future resolves with them, or with `on_done` the images (or the
        error) go to on_done(images, error) as they are known; `drop(job)` forgets them."""
        if len(captions) != len(seeds) or not captions:
            raise ValueError("one seed per caption, at least one caption")
        return self._submit(captions, seeds, truncation, attention, on_done)

    def drop(self, job: _Job) -> None:
        self._drop(job)

    def _submit(
        self,
        captions: list[str],
        seeds: list[int],
        truncation: float,
        attention: bool,
        on_done: OnDone | None = None,
    ) -> _Job:
        if self.queued_images + len(captions) > self.max_queue_images:
            raise QueueFull(self._retry_after(len(captions)))
        future: asyncio.Future[list[GeneratedImage]] | Listener
        if on_done is None:
            future = asyncio.get_running_loop().create_future()
        else:
            future = Listener(on_done)
        job = _Job(list(captions), list(seeds), float(truncation), bool(attention), future)
        self._pending.extend(_Item(job, index) for index in range(len(captions)))
        if len(self._pending) >= self._wake_at:
            self._arrived.set()
        return job

    def _retry_after(self, images: int) -> int:
        backlog = self.queued_images + images
        return max(1, math.ceil(backlog * self._seconds_per_image))

    def _drop(self, job: _Job) -> None:
        """Forget the job's images that have not started; its running ones are discarded."""
        job.cancelled = True
        self._pending = deque(item for item in self._pending if item.job is not job)
        self._metrics.queue_images.set(self.queued_images)
        if not job.future.done():
            job.future.cancel()

    async def _form_batches(self) -> None:
        while True:
            if not self._pending or (self._running and not self._may_queue_behind()):
                # nothing to do until an image arrives (idle), a full batch is queued (to go
                # behind the running one) or the model finishes a batch
                if not self._running:
                    await self._wait_for_images(1)
                else:
                    await self._wait_for_images(self.max_batch_images if self._running < 2 else 0)
                continue
            if not self._running:
                # A batch gathers for max_wait once both its oldest image and the model are
                # there: under load the oldest has waited through the last batch, and without
                # this the next batch would leave at once with whatever the HTTP side had
                # parsed by then.
                gathering_since = max(self._pending[0].job.enqueued, self._model_free_since)
                await self._gather(gathering_since + self.max_wait_s)
            batch = self._take_batch()
            if batch:
                self._running += 1
                task = asyncio.get_running_loop().create_task(self._run_batch(batch))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)

    def _may_queue_behind(self) -> bool:
        """A full batch goes to the model while the last one still runs, so the model
        starts it the moment it is free instead of after the event loop has delivered the last
        one's images (one batch queued at most; a partial batch waits for the model)."""
        return self._running < 2 and len(self._pending) >= self.max_batch_images

    async def _wait_for_images(self, images: int) -> None:
        """Until `images` are queued (0: only the model finishing a batch wakes it); fewer do
        not wake the batch former (per request, with a new wait_for timer, it cost the most)."""
        self._wake_at = images or math.inf
        self._arrived.clear()
        try:
            await self._arrived.wait()
        finally:
            self._wake_at = 1

    async def _gather(self, deadline: float) -> None:
        while len(self._pending) < self.max_batch_images:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wait_for_images(self.max_batch_images), remaining)
            except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
                return

    def _take_batch(self) -> list[_Item]:
        """Up to max_batch_images queued images sharing the oldest one's call arguments."""
        if not self._pending:
            return []
        pending = self._pending
        key = pending[0].job.key
        batch: list[_Item] = []
        kept: list[_Item] = []  # images of other call arguments met on the way, kept in order
        room = self.max_batch_images
        while pending and room:
            item = pending.popleft()
            if item.job.key == key:
                batch.append(item)
                room -= 1
            else:
                kept.append(item)
        pending.extendleft(reversed(kept))
        # once a batch, not per image: /metrics reads the depth at a scrape in one process, the
        # engine's status broadcast a few times a second with several workers
        self._metrics.queue_images.set(self.queued_images)
        return batch

    async def _run_batch(self, batch: list[_Item]) -> None:
        submitted = time.perf_counter()
        observe_all(self._metrics.queue_seconds, [submitted - item.job.enqueued for item in batch])
        job = batch[0].job
        jobs = {item.job for item in batch}
        self._running_jobs |= jobs
        captions = [item.job.captions[item.position] for item in batch]
        seeds = [item.job.seeds[item.position] for item in batch]
        try:
            generated: Generated = await asyncio.wrap_future(
                self.model.generate(captions, seeds, job.truncation, job.attention)
            )
        except Exception as error:
            logger.exception("batch of %d images failed", len(batch))
            self._fail(batch, error)
            return
        finally:
            self._running_jobs -= jobs
            self._running -= 1
            if not self._running:
                self._model_free_since = time.perf_counter()
            self._arrived.set()  # wakes the batch former: the model has room again
        elapsed = generated.seconds
        self._metrics.inference_seconds.observe(elapsed)
        self._metrics.batch_images.observe(len(batch))
        self._metrics.text_cache.labels(result="hit").inc(generated.cache_hits)
        self._metrics.text_cache.labels(result="miss").inc(generated.cache_misses)
        self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * elapsed / len(batch)
        maps: list[np.ndarray | None] = [None] * len(batch)
        if generated.attention:
            maps = list(generated.attention)
        for row, item in enumerate(batch):
            image = GeneratedImage(
                generated.pixels[row], seeds[row], generated.tokens[row], maps[row]
            )
            self._deliver(item, image)

    def _deliver(self, item: _Item, image: GeneratedImage) -> None:
        job = item.job
        if job.cancelled or job.future.done():
            return
        job.results[item.position] = image
        job.missing -= 1
        if not job.missing:
            job.future.set_result(job.results)  # type: ignore[arg-type]  # every slot filled

    def _fail(self, batch: list[_Item], error: Exception) -> None:
        for job in {id(item.job): item.job for item in batch}.values():
            if not job.future.done():
                job.future.set_exception(error)
            self._drop(job)
