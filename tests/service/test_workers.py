"""Several HTTP workers in front of one engine (xmc_service.engine): their requests share
batches, and /metrics from any worker counts them all. The real xmc-serve, in a subprocess, with
the benchmarks' stand-in model (benchmarks/standin_server.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_workers() -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XMC_WORKERS": "2",
        "XMC_MAX_WAIT_MS": "1500",  # one window long enough to gather every request below
        "XMC_MAX_BATCH_IMAGES": "64",
        "XMC_WARMUP": "false",
        "XMC_STANDIN_RESOLUTION": "16",
    }
    command = [sys.executable, str(ROOT / "benchmarks/standin_server.py"), "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = 0
        while ready < 6:  # fresh connections: both workers have heard the engine say ready
            assert server.poll() is None, "xmc-serve exited"
            assert time.monotonic() < deadline, "never ready"
            try:
                ok = httpx.get(f"{base}/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                ok = False
            ready = ready + 1 if ok else 0
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0  # SIGTERM: a clean stop of every process


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _sample(metrics: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", metrics, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_requests_from_two_workers_share_one_batch_and_metrics_sum_them(
    two_workers: str,
) -> None:
    # connect first (the kernel spreads the connections over the workers), then send every
    # request within a few ms, well inside one batching window
    host, port = two_workers.removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=30) for _ in range(24)]
    for seed, sock in enumerate(sockets):
        body = json.dumps({"prompt": "a red circle", "seed": seed}).encode()
        head = (
            "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
    answers = [_read_answer(sock) for sock in sockets]
    for sock in sockets:
        sock.close()
    assert [status for status, _, _ in answers] == [200] * 24
    served_by = {headers["x-xmc-worker"] for _, headers, _ in answers}
    assert served_by == {"0", "1"}
    seeds = [json.loads(body)["data"][0]["seed"] for _, _, body in answers]
    assert seeds == list(range(24))
    metrics = httpx.get(f"{two_workers}/metrics").text
    assert _sample(metrics, "xmc_batch_images_count") == 1  # one batch ...
    assert _sample(metrics, "xmc_batch_images_sum") == 24  # ... of both workers' images
    assert _sample(metrics, "xmc_images_generated_total") == 24  # counted in both workers
    assert _sample(metrics, "xmc_queue_images") == 0  # the engine's queue depth


def test_every_worker_answers_readiness_and_the_model(two_workers: str) -> None:
    with httpx.Client() as client:
        models = client.get(f"{two_workers}/v1/models").json()
    assert models["data"][0]["id"] == "stand-in-16px"
    assert models["data"][0]["resolution"] == 16


def test_a_url_image_is_served_by_every_worker(two_workers: str) -> None:
    body = {"prompt": "a red circle", "response_format": "url", "seed": 5}
    url = httpx.post(f"{two_workers}/v1/images/generations", json=body).json()["data"][0]["url"]
    fetched = []
    for _ in range(16):  # fresh connections, spread over both workers
        with httpx.Client() as client:
            answer = client.get(f"{two_workers}{url}")
            fetched.append((answer.status_code, answer.headers["content-type"], answer.content))
    assert {(status, kind) for status, kind, _ in fetched} == {(200, "image/png")}
    assert len({content for _, _, content in fetched}) == 1
