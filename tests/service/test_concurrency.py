"""Under real uvicorn: an overfilled queue answers only 200s and 429s; a client that leaves
gets its queued work dropped."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx

from tests.service.conftest import running_server
from tests.service.fakes import FakePipeline
from xmc_service.app import create_app
from xmc_service.settings import Settings


class SlowPipeline:
    """The tiny real model, 40 ms slower per batch, so a burst of requests must queue."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self.model_id, self.resolution = pipeline.model_id, pipeline.resolution

    def encode_text(self, captions: list[str]) -> Any:
        return self._pipeline.encode_text(captions)

    def generate(self, feats: Any, seeds: list[int], **options: Any) -> Any:
        time.sleep(0.04)
        return self._pipeline.generate(feats, seeds, **options)


def test_overfilled_queue_answers_only_200_and_429(tiny_pipeline: Any) -> None:
    settings = Settings(max_batch_images=4, max_wait_ms=2.0, max_queue_images=16)
    app = create_app(settings, pipeline=SlowPipeline(tiny_pipeline))

    async def burst(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            requests = [
                client.post("/v1/images/generations", json={"prompt": f"shape {i}", "n": 4})
                for i in range(40)
            ]
            return await asyncio.gather(*requests)

    with running_server(app) as base:
        responses = asyncio.run(burst(base))
        metrics = httpx.get(f"{base}/metrics").text
    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 200:
            assert len(response.json()["data"]) == 4
        else:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["code"] == "queue_full"
            assert response.json()["error"]["type"] == "rate_limit_error"
    rejected = f'xmc_rejections_total{{reason="queue_full"}} {float(statuses.count(429))}'
    assert rejected in metrics


def test_a_client_that_disconnects_gets_its_work_dropped() -> None:
    gate = threading.Event()
    fake = FakePipeline(gate=gate)
    app = create_app(Settings(max_batch_images=8, max_wait_ms=1.0, warmup=False), pipeline=fake)

    def queued(base: str) -> int:
        return httpx.get(f"{base}/health/ready").json()["queued_images"]

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            holder = asyncio.create_task(
                client.post("/v1/images/generations", json={"prompt": "held", "seed": 1})
            )
            await asyncio.to_thread(fake.started.wait, 10)
            impatient = httpx.AsyncClient(base_url=base, timeout=0.5)
            try:
                await impatient.post("/v1/generate", json={"captions": ["gone"], "n": 5})
                raise AssertionError("the held worker should have made this request time out")
            except httpx.ReadTimeout:
                pass
            finally:
                await impatient.aclose()
            for _ in range(200):
                if await asyncio.to_thread(queued, base) == 0:
                    break
                await asyncio.sleep(0.02)
            assert await asyncio.to_thread(queued, base) == 0
            gate.set()
            assert (await holder).status_code == 200

    with running_server(app) as base:
        asyncio.run(scenario(base))
        metrics = httpx.get(f"{base}/metrics").text
    assert fake.batch_sizes == [1]
    assert all("gone" not in captions for captions in fake.encoded)
    assert 'xmc_rejections_total{reason="client_disconnected"} 1.0' in metrics


def test_past_the_connection_limit_overload_is_refused_at_once() -> None:
    """XMC_MAX_CONNECTIONS bounds open connections (the front's guard): with the model held, 64
    clients against a limit of 8 get 429 with Retry-After in well under a second, not after the
    queue drains (it was a plain-text 503 without Retry-After, from uvicorn's limit)."""
    from xmc_service.server import server_options

    gate = threading.Event()
    fake = FakePipeline(gate=gate)
    settings = Settings(max_batch_images=4, max_wait_ms=1.0, warmup=False, max_connections=8)
    app = create_app(settings, pipeline=fake)

    async def crowd(base: str) -> list[tuple[int, float, str | None]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def one(i: int) -> tuple[int, float, str | None]:
                tick = time.perf_counter()
                response = await client.post(
                    "/v1/images/generations", json={"prompt": f"p{i}", "seed": i}
                )
                retry_after = response.headers.get("retry-after")
                return response.status_code, time.perf_counter() - tick, retry_after

            tasks = [asyncio.create_task(one(i)) for i in range(64)]
            refused_by = time.perf_counter() + 5
            while time.perf_counter() < refused_by and sum(t.done() for t in tasks) < 56:
                await asyncio.sleep(0.01)
            held = not gate.is_set()
            gate.set()  # now let the admitted ones finish
            results = await asyncio.gather(*tasks)
            assert held
            return results

    with running_server(app, **server_options(settings)) as base:
        results = asyncio.run(crowd(base))
        after = httpx.post(f"{base}/v1/images/generations", json={"prompt": "x"}, timeout=30)
    assert after.status_code == 200  # the crowd gone, the server serves again
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 429}, statuses
    refused = sorted(seconds for status, seconds, _ in results if status == 429)
    assert len(refused) >= 64 - 8, statuses
    assert {retry for status, _, retry in results if status == 429} == {"1"}
    assert refused[len(refused) // 2] < 1.0, refused  # the median refusal, model still held
