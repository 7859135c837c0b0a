"""The batcher with a fake model (batch forming, queue bound, drops, failures, text cache) and
with the tiny real model (an image does not depend on its batch)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from tests.service.fakes import FakePipeline
from xmc_service.batcher import Batcher, QueueFull
from xmc_service.metrics import make_metrics
from xmc_service.model_host import ModelProcessExited, ThreadHost


def make_batcher(pipeline: Any, **options: Any) -> Batcher:
    defaults = {
        "max_batch_images": 4,
        "max_wait_ms": 20.0,
        "max_queue_images": 64,
    }
    host = ThreadHost.around(pipeline, options.pop("text_cache_size", 16))
    return Batcher(host, metrics=make_metrics(), **{**defaults, **options})


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), timeout=30))


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def test_batches_fill_to_max_across_requests() -> None:
    gate = threading.Event()
    fake = FakePipeline(gate=gate)

    async def scenario() -> list[int]:
        batcher = make_batcher(fake, max_batch_images=4)
        batcher.start()
        first = asyncio.create_task(batcher.generate(["a"], [0]))
        await asyncio.to_thread(fake.started.wait, 5)  # the worker holds a batch of one
        rest = [asyncio.create_task(batcher.generate([f"c{i}"], [i])) for i in range(3)]
        await asyncio.sleep(0.1)
        assert batcher.queued_images == 3  # a partial batch waits for the model
        rest += [asyncio.create_task(batcher.generate([f"c{i}"], [i])) for i in range(3, 10)]
        # one full batch goes to the model thread behind the running one; no second one
        await wait_until(lambda: batcher.queued_images == 6)
        await asyncio.sleep(0.1)
        assert batcher.queued_images == 6
        gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        assert [r[0].seed for r in results] == [0, *range(10)]
        return fake.batch_sizes

    assert run(scenario) == [1, 4, 4, 2]


def test_a_lone_image_waits_max_wait_then_goes_alone() -> None:
    fake = FakePipeline()

    async def scenario() -> float:
        batcher = make_batcher(fake, max_batch_images=64, max_wait_ms=150.0)
        batcher.start()
        started = time.perf_counter()
        await batcher.generate(["lone"], [1])
        elapsed = time.perf_counter() - started
        together = [batcher.generate([f"t{i}"], [i]) for i in range(3)]
        await asyncio.gather(*together)
        await batcher.stop()
        return elapsed

    elapsed = run(scenario)
    assert 0.14 <= elapsed < 2.0
    assert fake.batch_sizes == [1, 3]  # three requests arriving together share one batch


def test_after_a_batch_the_next_one_still_gathers_for_max_wait() -> None:
    gate = threading.Event()
    fake = FakePipeline(gate=gate)

    async def scenario() -> None:
        batcher = make_batcher(fake, max_batch_images=8, max_wait_ms=300.0)
        batcher.start()
        first = asyncio.create_task(batcher.generate(["a"], [0]))
        await asyncio.to_thread(fake.started.wait, 5)
        waited = asyncio.create_task(batcher.generate(["b", "c"], [1, 2]))  # waits > max_wait
        await asyncio.sleep(0.35)
        gate.set()
        await first
        await asyncio.sleep(0.05)  # the model is free; this one still joins the next batch
        late = asyncio.create_task(batcher.generate(["d"], [3]))
        await asyncio.gather(waited, late)
        await batcher.stop()

    run(scenario)
    assert fake.batch_sizes == [1, 3]


def test_full_queue_refuses_with_retry_after() -> None:
    gate = threading.Event()
    fake = FakePipeline(gate=gate)

    async def scenario() -> None:
        batcher = make_batcher(fake, max_batch_images=1, max_queue_images=5)
        batcher.start()
        running = asyncio.create_task(batcher.generate(["a"], [0]))
        await asyncio.to_thread(fake.started.wait, 5)
        queued = asyncio.create_task(batcher.generate(["b"] * 5, list(range(5))))
        # one image of them goes to the model thread behind the running one: 4 wait
        await wait_until(lambda: batcher.queued_images == 4)
        more = asyncio.create_task(batcher.generate(["d"], [7]))
        await wait_until(lambda: batcher.queued_images == 5)
        with pytest.raises(QueueFull) as refused:
            await batcher.generate(["c"], [9])
        assert refused.value.retry_after_s >= 1
        gate.set()
        assert len(await queued) == 5 and len(await running) == len(await more) == 1
        assert len(await batcher.generate(["c"], [9])) == 1  # room again
        await batcher.stop()

    run(scenario)


def test_a_cancelled_request_drops_its_queued_images() -> None:
    gate = threading.Event()
    fake = FakePipeline(gate=gate)

    async def scenario() -> None:
        batcher = make_batcher(fake, max_batch_images=8)
        batcher.start()
        running = asyncio.create_task(batcher.generate(["a"], [0]))
        await asyncio.to_thread(fake.started.wait, 5)
        doomed = asyncio.create_task(batcher.generate(["gone"] * 6, list(range(6))))
        kept = asyncio.create_task(batcher.generate(["kept"], [7]))
        await wait_until(lambda: batcher.queued_images == 7)
        doomed.cancel()
        await wait_until(lambda: batcher.queued_images == 1)
        gate.set()
        await running
        assert [image.seed for image in await kept] == [7]
        assert doomed.cancelled()
        await batcher.stop()

    run(scenario)
    assert fake.batch_sizes == [1, 1]
    assert all("gone" not in captions for captions in fake.encoded)


def test_fail_queued_fails_every_waiting_request_with_the_error() -> None:
    gate = threading.Event()
    fake = FakePipeline(gate=gate)

    async def scenario() -> None:
        batcher = make_batcher(fake, max_batch_images=8)
        batcher.start()
        running = asyncio.create_task(batcher.generate(["a"], [0]))
        await asyncio.to_thread(fake.started.wait, 5)
        waiting = [asyncio.create_task(batcher.generate([f"w{i}"] * 2, [i, i])) for i in range(3)]
        await wait_until(lambda: batcher.queued_images == 6)
        batcher.fail_queued(ModelProcessExited("the model process exited with code -9"))
        assert batcher.queued_images == 0
        for task in waiting:
            with pytest.raises(ModelProcessExited, match="code -9"):
                await task
        gate.set()
        await running
        await batcher.stop()

    run(scenario)
    assert fake.batch_sizes == [1]


def test_a_failing_model_fails_its_requests_and_the_batcher_goes_on() -> None:
    fake = FakePipeline(fail=True)

    async def scenario() -> None:
        batcher = make_batcher(fake)
        batcher.start()
        with pytest.raises(RuntimeError, match="fake model failed"):
            await batcher.generate(["a", "b"], [1, 2])
        fake.fail = False
        assert len(await batcher.generate(["a"], [1])) == 1
        await batcher.stop()

    run(scenario)


def test_different_truncations_never_share_a_batch() -> None:
    fake = FakePipeline()

    async def scenario() -> None:
        batcher = make_batcher(fake, max_batch_images=8, max_wait_ms=50.0)
        batcher.start()
        await asyncio.gather(
            batcher.generate(["a", "b"], [1, 2], truncation=1.0),
            batcher.generate(["c"], [3], truncation=0.5),
            batcher.generate(["d"], [4], truncation=1.0),
        )
        await batcher.stop()

    run(scenario)
    assert sorted(fake.batch_sizes) == [1, 3]


def test_text_features_are_cached_per_caption_lru() -> None:
    fake = FakePipeline()

    async def scenario() -> None:
        batcher = make_batcher(fake, max_wait_ms=0.0, text_cache_size=2)
        batcher.start()
        for captions in (["x", "y", "x"], ["x"], ["y"], ["z"], ["x"], ["y"]):
            await batcher.generate(captions, list(range(len(captions))))
        await batcher.stop()

    run(scenario)
    # x,y encoded once (x twice in a batch); z evicts the least recent (x); x evicts y
    assert fake.encoded == [["x", "y"], ["z"], ["x"], ["y"]]


def test_an_image_does_not_depend_on_its_batch(tiny_pipeline: Any) -> None:
    metrics = make_metrics()

    async def scenario() -> tuple[Any, Any]:
        batcher = Batcher(
            ThreadHost.around(tiny_pipeline, text_cache_size=16),
            max_batch_images=8,
            max_wait_ms=100.0,
            max_queue_images=64,
            metrics=metrics,
        )
        batcher.start()
        alone = await batcher.generate(["a red circle"], [1234])
        crowd = await asyncio.gather(
            batcher.generate(["a blue square", "a green ring"], [1, 2]),
            batcher.generate(["a red circle"], [1234]),
            batcher.generate(["a tiny star"] * 3, [7, 8, 9]),
        )
        await batcher.stop()
        return alone[0], crowd[1][0]

    alone, batched = run(scenario)
    batches = metrics.registry.get_sample_value("xmc_batch_images_count")
    assert (batches, metrics.registry.get_sample_value("xmc_batch_images_sum")) == (2, 7)
    difference = np.abs(alone.pixels.astype(int) - batched.pixels.astype(int))
    assert difference.max() <= 1
    assert alone.pixels.shape == (32, 32, 3) and alone.pixels.std() > 0
