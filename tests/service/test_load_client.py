"""The serving benchmark's cheap keep-alive client (benchmarks/http_load.py) against real uvicorn:
the answers it reads are the service's, byte for byte, on one connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from benchmarks.http_load import Connection
from tests.service.conftest import running_server
from xmc_service.app import create_app
from xmc_service.settings import Settings


def test_the_bench_client_posts_on_one_keep_alive_connection(tiny_pipeline: Any) -> None:
    app = create_app(Settings(max_wait_ms=1.0), pipeline=tiny_pipeline)

    async def three(base: str) -> list[tuple[int, bytes]]:
        connection = Connection(base)
        try:
            answers = [
                await connection.post(
                    "/v1/images/generations", {"prompt": "a red circle", "seed": s}
                )
                for s in (1, 2)
            ]
            answers.append(await connection.post("/v1/images/generations", {"prompt": ""}))
            return answers
        finally:
            connection.close()

    with running_server(app) as base:
        (ok1, body1), (ok2, body2), (bad, error) = asyncio.run(three(base))
    assert (ok1, ok2, bad) == (200, 200, 400)
    first, second = json.loads(body1), json.loads(body2)
    assert len(first["data"]) == 1 and first["data"][0]["b64_json"] != second["data"][0]["b64_json"]
    assert json.loads(error)["error"]["type"] == "invalid_request_error"
