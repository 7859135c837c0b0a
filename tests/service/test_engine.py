"""The engine's side of the HTTP workers' pipes (xmc_service.engine): a request's images cross
as one buffer and come back whole; the batcher's queue-time histogram is written per batch and
reads as if observed per image; a cancelled or failed call answers the worker as before."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from tests.service.fakes import FakePipeline
from xmc_service.batcher import Batcher, GeneratedImage, observe_all
from xmc_service.engine import Engine, pack, unpack
from xmc_service.imaging import ImageStore
from xmc_service.metrics import make_metrics
from xmc_service.model_host import ThreadHost
from xmc_service.settings import Settings
from xmc_service.state import ServiceState


def _images(count: int, attention: bool) -> list[GeneratedImage]:
    rng = np.random.default_rng(count)
    batch = rng.integers(0, 256, (count + 1, 4, 5, 3), dtype=np.uint8)  # (B, H, W, 3)
    return [
        GeneratedImage(
            batch[row + 1],  # rows of a batch, as the batcher hands them over
            1000 + row,
            ["[CLS]", f"word{row}"],
            rng.random((2, 16, 16), dtype=np.float32) if attention else None,
        )
        for row in range(count)
    ]


def test_a_requests_images_cross_the_pipe_as_one_buffer_and_come_back_whole() -> None:
    for count, attention in ((1, False), (3, False), (2, True)):
        images = _images(count, attention)
        packed = pickle.loads(pickle.dumps(pack(images)))  # as the pipe carries it
        shape, buffer, seeds, tokens, maps = packed
        assert isinstance(buffer, bytes) and len(buffer) == count * 4 * 5 * 3
        assert shape == (4, 5, 3) and seeds == [1000 + row for row in range(count)]
        back = unpack(packed)
        assert len(back) == count
        for sent, received in zip(images, back, strict=True):
            assert received.pixels.shape == (4, 5, 3) and received.pixels.dtype == np.uint8
            assert np.array_equal(received.pixels, sent.pixels)
            assert (received.seed, received.tokens) == (sent.seed, sent.tokens)
            if attention:
                assert np.array_equal(received.attention, sent.attention)
            else:
                assert received.attention is None and maps is None
        assert tokens == [image.tokens for image in images]


def _samples(histogram: Histogram) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_observe_all_leaves_what_observing_one_by_one_leaves() -> None:
    buckets = (0.001, 0.005, 0.01, 0.1)
    one_by_one = Histogram("one", "d", buckets=buckets, registry=CollectorRegistry())
    together = Histogram("one", "d", buckets=buckets, registry=CollectorRegistry())
    # on a bound, between bounds, below the first, past the last finite one, repeated
    amounts = [0.0, 0.001, 0.0010001, 0.005, 0.003, 0.05, 0.1, 7.0, 0.003, 0.0]
    for amount in amounts:
        one_by_one.observe(amount)
    observe_all(together, amounts[:4])
    observe_all(together, amounts[4:])
    observe_all(together, [])
    assert _samples(together) == _samples(one_by_one)
    assert _samples(together)[("one_count", ())] == len(amounts)


def test_observe_all_falls_back_to_observe_without_prometheus_parts() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    recorder = Recorder()
    observe_all(recorder, [0.5, 0.25])
    assert recorder.seen == [0.5, 0.25]


class _Pipe:
    """The engine's end of a worker's pipe, in memory: what the engine sends is kept."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[Any, ...]]] = []

    def send(self, messages: list[tuple[Any, ...]]) -> None:
        self.sent.append(pickle.loads(pickle.dumps(messages)))

    def answers(self) -> dict[int, tuple[Any, ...]]:
        return {m[1]: m for batch in self.sent for m in batch if m[0] != "status"}


def test_the_engine_answers_each_call_by_number_and_drops_a_cancelled_one() -> None:
    async def scenario() -> tuple[dict[int, tuple[Any, ...]], list[int]]:
        pipeline = FakePipeline()
        state = ServiceState(Settings(), make_metrics(), ImageStore(1.0, 1))
        state.batcher = Batcher(
            ThreadHost.around(pipeline, 8),
            max_batch_images=8,
            max_wait_ms=30.0,
            max_queue_images=5,
            metrics=state.metrics,
        )
        state.status = "ready"
        state.batcher.start()
        pipe = _Pipe()
        engine = Engine(state, [pipe])
        engine._start_call(0, ("generate", 1, ["a red circle", "a star"], [7, 8], 1.0, False))
        engine._start_call(0, ("generate", 2, ["a blue star"], [9], 1.0, False))
        engine._start_call(0, ("cancel", 2))  # before its batch leaves: dropped, no answer
        engine._start_call(0, ("generate", 3, ["x"] * 6, list(range(6)), 1.0, False))  # > 5
        for _ in range(300):
            await asyncio.sleep(0.01)
            if 1 in pipe.answers():
                break
        await asyncio.sleep(0.05)
        await state.batcher.stop()
        return pipe.answers(), pipeline.batch_sizes

    answers, batch_sizes = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert batch_sizes == [2]  # the cancelled call's image never reached the model
    assert set(answers) == {1, 3}
    kind, _, packed = answers[1]
    images = unpack(packed)
    assert kind == "ok" and [image.seed for image in images] == [7, 8]
    assert images[0].pixels.shape == (8, 8, 3) and images[1].tokens == ["[CLS]", "a sta"]
    assert answers[3][0] == "full" and answers[3][2] >= 1  # QueueFull's retry-after, as 429
