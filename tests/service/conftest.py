"""Shared fixtures: one tiny real artifact per session, apps built around it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from xmc_service.app import create_app
from xmc_service.settings import Settings


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.testing import make_tiny_artifact

    return make_tiny_artifact(tmp_path_factory.mktemp("artifact") / "xmc-tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_artifact: Path) -> Any:
    from models import XMCGANPipeline

    return XMCGANPipeline.from_pretrained(tiny_artifact, device="cpu")


def wait_ready(client: TestClient, timeout_s: float = 120.0) -> None:
    assert wait_status(client, "ready", timeout_s).status_code == 200


def wait_status(client: TestClient, status: str, timeout_s: float = 60.0) -> Any:
    """Poll /health/ready until its status is `status` (loading a model from its folder starts
    a process, a few seconds); returns that response."""
    deadline = time.monotonic() + timeout_s
    while (ready := client.get("/health/ready")).json()["status"] != status:
        assert time.monotonic() < deadline, f"not {status} after {timeout_s} s: {ready.json()}"
        time.sleep(0.02)
    return ready


@contextmanager
def serving(pipeline: Any, **settings: Any) -> Iterator[TestClient]:
    """A TestClient around create_app(Settings(**settings), pipeline), ready to answer."""
    settings.setdefault("max_batch_images", 8)
    settings.setdefault("max_wait_ms", 2.0)
    app = create_app(Settings(**settings), pipeline=pipeline)
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def client(tiny_pipeline: Any) -> Iterator[TestClient]:
    """The tiny model served with default settings (no API keys)."""
    with serving(tiny_pipeline) as test_client:
        yield test_client


@pytest.fixture
def make_client(tiny_pipeline: Any) -> Callable[..., Any]:
    def factory(pipeline: Any = None, **settings: Any) -> Any:
        return serving(pipeline if pipeline is not None else tiny_pipeline, **settings)

    return factory


@contextmanager
def running_server(app: Any, **options: Any) -> Iterator[str]:
    """Serve `app` with uvicorn (and these uvicorn.Config options) on a free loopback port in a
    thread; yields the base URL."""
    import socket
    import threading

    import httpx
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        else:
            raise AssertionError("the server never became ready")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
