"""The load client of `benchmarks/http_side.py`, run in a process of its own so that its CPU is
counted apart from the server's: N closed-loop keep-alive HTTP/1.1 connections on a raw asyncio
protocol, each sending the next request as soon as its answer is read, for a set time.

    python -m benchmarks.http_side_client PORT CLIENTS IMAGES SECONDS API

prints "go" once connected, then one JSON line with the counts, latencies and its own CPU time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

CAPTIONS = [f"a {c} {s} on the {w}" for c in ("red", "blue") for s in ("circle", "star")
            for w in ("left", "right")]  # fmt: skip


# ---------------------------------------------------------------- the load client (own process)


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: writes a request, reads a Content-Length answer."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
        if len(self.buffer) >= end + 4 + length:
            status = int(head[9:12])
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            waiter, self.waiter = self.waiter, None
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the server closed the connection")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def _connect(port: int) -> _Client:
    _, protocol = await asyncio.get_running_loop().create_connection(_Client, "127.0.0.1", port)
    return protocol


def _raw_request(path: str, body: dict, headers: str = "") -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def _load(port: int, clients: int, images: int, seconds: float, api: str) -> dict:
    connections = [await _connect(port) for _ in range(clients)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    reconnects = 0

    async def send(number: int, raw: bytes) -> tuple[int, bytes]:
        """On the client's connection; a new one if the server closed it while the client
        waited (an idle connection's timeout, during the warm-up's slowest answers)."""
        nonlocal reconnects
        try:
            return await connections[number].request(raw)
        except ConnectionError:
            reconnects += 1
            connections[number] = await _connect(port)
            return await connections[number].request(raw)

    def request(number: int, seed: int) -> bytes:
        caption = CAPTIONS[seed % len(CAPTIONS)]
        if api == "binary":
            body = {"captions": [caption], "n": images, "seeds": list(range(seed, seed + images))}
            return _raw_request("/v1/generate", body, "Accept: application/x-xmc-images\r\n")
        return _raw_request(
            "/v1/images/generations", {"prompt": caption, "n": images, "seed": seed}
        )

    async def one_client(number: int, deadline: float) -> None:
        seed = number * 1_000_003
        while time.perf_counter() < deadline:
            tick = time.perf_counter()
            status, _ = await send(number, request(number, seed))
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(time.perf_counter() - tick)
            seed += images

    # one request each first: connections accepted, text features cached, kernels warm
    await asyncio.gather(*(send(i, request(i, i)) for i in range(clients)))
    warm_up_reconnects, reconnects = reconnects, 0
    print("go", flush=True)
    started_cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_client(i, started + seconds) for i in range(clients)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    return {
        "reconnects": reconnects,
        "warm_up_reconnects": warm_up_reconnects,
        "requests": len(latencies),
        "images": len(latencies) * images,
        "seconds": elapsed,
        "client_cpu_s": time.process_time() - started_cpu,
        "statuses": statuses,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
    }


def client_main(argv: list[str]) -> int:
    port, clients, images, seconds, api = argv
    result = asyncio.run(_load(int(port), int(clients), int(images), float(seconds), api))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(client_main(sys.argv[1:]))
