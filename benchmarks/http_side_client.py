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

# requests prebuilt per connection, cycled: seeds c * 1_000_003 + i * n for i < CYCLE (the
# stand-in's pixels repeat every 64 seeds, so a longer cycle would measure nothing more)
CYCLE = 64


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, driven by its own callbacks: each answer, read by its
    Content-Length, is counted and the next prebuilt request written at once, with no task,
    future or coroutine per request (about half the client's CPU per request before)."""

    def __init__(self, requests: list[bytes], tally: _Tally) -> None:
        self.requests = requests
        self.tally = tally
        self.buffer = bytearray()
        self.transport: Any = None
        self.sent_at = 0.0
        self.turn = 0
        self.waiting = 0  # the answer's whole size (head and body) once its head is in, or 0
        self.status = 0
        self.deadline = 0.0  # no new request after this (perf_counter)
        self.done: asyncio.Future[None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def run(self, deadline: float) -> asyncio.Future[None]:
        """Send requests until `deadline`; the future resolves with the last answer (or fails
        when the server closes the connection)."""
        self.deadline = deadline
        self.done = asyncio.get_running_loop().create_future()
        if self.lost or self.transport.is_closing():  # closed while it waited between runs
            self.done.set_exception(ConnectionError("the server closed the connection"))
        else:
            self._send()
        return self.done

    def _send(self) -> None:
        self.turn += 1
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[self.turn % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.waiting:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                length = content_length(head)
                self.status, self.waiting = int(head[9:12]), end + 4 + length
            if len(self.buffer) < self.waiting:
                return
            del self.buffer[: self.waiting]
            self.waiting = 0
            now = time.perf_counter()
            self.tally.count(self.status, now - self.sent_at)
            if now < self.deadline:
                self._send()
            elif self.done is not None and not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("the server closed the connection"))


def content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased response head (0 when it has none)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : stop if stop >= 0 else len(head)])  # int() strips the spaces


class _Tally:
    """Statuses and the latencies of the 200s, while counting (not during the warm-up)."""

    def __init__(self) -> None:
        self.on = False
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}

    def count(self, status: int, latency: float) -> None:
        if not self.on:
            return
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(latency)


def _raw_request(path: str, body: dict, headers: str = "") -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def requests_for(number: int, images: int, api: str) -> list[bytes]:
    """Connection `number`'s requests, seeds number * 1_000_003 + i * images."""
    built = []
    for turn in range(CYCLE):
        seed = number * 1_000_003 + turn * images
        caption = CAPTIONS[seed % len(CAPTIONS)]
        if api == "binary":
            body = {"captions": [caption], "n": images, "seeds": list(range(seed, seed + images))}
            built.append(_raw_request("/v1/generate", body, "Accept: application/x-xmc-images\r\n"))
        else:
            body = {"prompt": caption, "n": images, "seed": seed}
            built.append(_raw_request("/v1/images/generations", body))
    return built


async def _load(port: int, clients: int, images: int, seconds: float, api: str) -> dict:
    loop = asyncio.get_running_loop()
    tally = _Tally()
    reconnects = 0

    async def connect(number: int) -> _Client:
        requests = requests_for(number, images, api)
        _, client = await loop.create_connection(
            lambda: _Client(requests, tally), "127.0.0.1", port
        )
        return client

    async def one_client(number: int, deadline: float) -> None:
        """Requests until `deadline` on one connection; a new one if the server closed it (an
        idle connection's timeout, during the warm-up's slowest answers)."""
        nonlocal reconnects
        while True:
            try:
                await connections[number].run(deadline)
                return
            except ConnectionError:
                reconnects += 1
                connections[number] = await connect(number)

    connections = [await connect(number) for number in range(clients)]
    # one request each first: connections accepted, text features cached, kernels warm
    await asyncio.gather(*(one_client(i, 0.0) for i in range(clients)))
    warm_up_reconnects, reconnects = reconnects, 0
    print("go", flush=True)
    tally.on = True
    started_cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_client(i, started + seconds) for i in range(clients)))
    elapsed = time.perf_counter() - started
    client_cpu_s = time.process_time() - started_cpu
    tally.on = False
    for connection in connections:
        if not connection.lost:
            connection.transport.close()
    latencies = tally.latencies
    return {
        "reconnects": reconnects,
        "warm_up_reconnects": warm_up_reconnects,
        "requests": len(latencies),
        "images": len(latencies) * images,
        "seconds": elapsed,
        "client_cpu_s": client_cpu_s,
        "statuses": tally.statuses,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
    }


def _event_loop_runner() -> Any:
    """uvloop's runner where installed (it is in the lock; about a third less CPU per request
    for the client), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def client_main(argv: list[str]) -> int:
    port, clients, images, seconds, api = argv
    run = _event_loop_runner()
    result = run(_load(int(port), int(clients), int(images), float(seconds), api))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(client_main(sys.argv[1:]))
