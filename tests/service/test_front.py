"""The front (xmc_service.front) and the defects it fixes: idle and slow connections, overload at
the connection level, HEAD, the slash redirect, authentication before the body, the binary
answer, the PNG encoder."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import running_server
from xmc_service.app import create_app
from xmc_service.imaging import encode_png
from xmc_service.server import server_options
from xmc_service.settings import Settings


def _get(base: str, path: str, method: str = "GET", headers: str = "") -> tuple[int, bytes, str]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        length = int(next((line.split(":")[1] for line in text.split("\r\n")
                           if line.lower().startswith("content-length")), "0"))  # fmt: skip
        while len(body) < length and method != "HEAD":
            body += sock.recv(65536)
    return int(text.split()[1]), body, text


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` within `within_s` (whatever it answered before)."""
    deadline = time.monotonic() + within_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def test_idle_and_slow_connections_are_closed_and_never_shut_the_service_out(
    tiny_pipeline: Any,
) -> None:
    settings = Settings(max_wait_ms=1.0, idle_timeout_s=0.5, max_connections=40)
    app = create_app(settings, pipeline=tiny_pipeline)
    with running_server(app, **server_options(settings)) as base:
        host, port = base.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)))
        slow.sendall(b"GET /health/live HTTP/1.1\r\n")  # a head that never ends
        idle = [socket.create_connection((host, int(port))) for _ in range(60)]
        # beyond max_connections a new connection is refused 429 with Retry-After at once
        status, _, head = _get(base, "/health/live")
        assert status == 429 and "retry-after: 1" in head.lower()
        closed = False
        for _ in range(10):  # the slow one keeps trickling header lines, for 2 s at most
            time.sleep(0.2)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed or _closed_by_server(slow, 0.5)
        assert all(_closed_by_server(sock, 2.0) for sock in idle)
        assert _get(base, "/health/live")[0] == 200  # the service answers again
        for sock in [*idle, slow]:
            sock.close()


def test_head_answers_where_get_does_without_a_body(client: Any) -> None:
    body = {"prompt": "a red circle", "response_format": "url"}
    url = client.post("/v1/images/generations", json=body).json()["data"][0]["url"]
    for path in (url, "/metrics", "/v1/models", "/health/ready", "/openapi.json"):
        get, head = client.get(path), client.head(path)
        assert (get.status_code, head.status_code) == (200, 200), path
        assert head.content == b"" and get.content != b""
        assert head.headers["content-type"] == get.headers["content-type"]


def test_the_slash_redirect_is_relative_and_reflects_no_host(client: Any) -> None:
    answer = client.get("/v1/models/?x=1", headers={"Host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/v1/models?x=1"


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"x" * 70_000, {"content-type": "application/json"}),
    ],
)
def test_the_key_is_checked_before_the_body(
    make_client: Any, content: bytes, headers: dict[str, str]
) -> None:
    with make_client(api_keys=["k1"]) as keyed:
        for path in ("/v1/images/generations", "/v1/generate", "/v1/interpolations"):
            answer = keyed.post(path, content=content, headers=headers)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["code"] == "missing_api_key"
        with_key = {**headers, "authorization": "Bearer k1"}
        answer = keyed.post("/v1/images/generations", content=content, headers=with_key)
        assert answer.status_code in (400, 413)


def test_the_binary_answer_holds_the_json_answers_images(client: Any) -> None:
    body = {"captions": ["a red circle", "a blue square"], "n": 2, "seeds": [1, 2, 3, 4]}
    as_json = client.post("/v1/generate", json=body)
    as_files = client.post(
        "/v1/generate", json=body, headers={"accept": "application/x-xmc-images"}
    )
    assert as_files.status_code == 200, as_files.text
    assert as_files.headers["content-type"] == "application/x-xmc-images"
    assert as_files.headers["x-seeds"] == "1,2,3,4"
    lengths = [int(n) for n in as_files.headers["x-xmc-lengths"].split(",")]
    assert sum(lengths) == len(as_files.content)
    offsets = np.cumsum([0, *lengths])
    files = [as_files.content[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    decoded = [base64.b64decode(image["b64_json"]) for image in as_json.json()["images"]]
    assert files == decoded  # the same PNG files, without base64 and JSON around them
    assert len(as_files.content) < 0.8 * len(as_json.content)


def test_png_encoder_round_trips_exactly() -> None:
    rng = np.random.default_rng(0)
    for shape in ((1, 1, 3), (32, 32, 3), (7, 13, 3), (256, 256, 3)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(pixels))).convert("RGB"))
        assert decoded.shape == shape and np.array_equal(decoded, pixels)


def test_a_slow_body_is_answered_408(tiny_pipeline: Any) -> None:
    settings = Settings(max_wait_ms=1.0, idle_timeout_s=0.5)
    app = create_app(settings, pipeline=tiny_pipeline)
    with running_server(app, **server_options(settings)) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pro'
            )
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408")
        assert json.loads(answer.partition("\r\n\r\n")[2])["error"]["code"] == "timeout"
