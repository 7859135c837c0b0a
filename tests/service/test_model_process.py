"""The model in a process of its own (xmc_service.model_process.ProcessHost, the default when the
service loads a model folder): the same images as on a thread, and its death seen."""

from __future__ import annotations

import base64
import io
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.conftest import wait_ready, wait_status
from xmc_service import cli
from xmc_service.app import create_app
from xmc_service.model_host import ModelProcessExited, ThreadHost
from xmc_service.model_process import ProcessHost
from xmc_service.settings import Settings


def _pixels(client: TestClient) -> np.ndarray:
    body = {"prompt": "a red circle above a blue square", "seed": 7, "n": 2}
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    images = [base64.b64decode(item["b64_json"]) for item in response.json()["data"]]
    return np.stack([np.asarray(Image.open(io.BytesIO(image))) for image in images])


def test_a_model_folder_is_served_from_its_own_process_with_the_threads_images(
    tiny_artifact: Path, tiny_pipeline: Any
) -> None:
    settings = {"max_batch_images": 4, "device": "cpu", "warmup": False}
    app = create_app(Settings(model_dir=str(tiny_artifact), **settings))
    with TestClient(app) as client:
        wait_ready(client)
        host = app.state.service.batcher.model
        assert isinstance(host, ProcessHost)
        assert host.pid != os.getpid() and os.path.exists(f"/proc/{host.pid}")
        served = _pixels(client)
        body = {"captions": ["a red circle", "a blue square"], "seeds": [3, 9], "frames": 4}
        walk = client.post("/v1/interpolations", json=body)
        assert walk.status_code == 200, walk.text
        assert Image.open(io.BytesIO(walk.content)).n_frames == 4
    assert not os.path.exists(f"/proc/{host.pid}/status")  # closed with the server
    with TestClient(create_app(Settings(**settings), pipeline=tiny_pipeline)) as client:
        wait_ready(client)
        assert isinstance(client.app.state.service.batcher.model, ThreadHost)
        on_a_thread = _pixels(client)
    assert served.shape == (2, 32, 32, 3) and served.std() > 0
    assert np.abs(served.astype(int) - on_a_thread.astype(int)).max() <= 1


def test_model_process_off_runs_the_folder_on_a_thread(tiny_artifact: Path) -> None:
    settings = Settings(model_dir=str(tiny_artifact), model_process=False, warmup=False)
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client)
        assert isinstance(app.state.service.batcher.model, ThreadHost)
        assert _pixels(client).shape == (2, 32, 32, 3)


@pytest.mark.parametrize("keep_retrying", [False, True])
def test_a_killed_model_process_fails_readiness_then_stops_or_reloads(
    tiny_artifact: Path, keep_retrying: bool
) -> None:
    settings = Settings(
        model_dir=str(tiny_artifact), warmup=False, keep_retrying=keep_retrying, retry_s=0.05
    )
    app = create_app(settings)
    stops: list[bool] = []
    app.state.service.on_failure = lambda: stops.append(True)
    with TestClient(app) as client:
        wait_ready(client)
        first = app.state.service.batcher.model
        os.kill(first.pid, signal.SIGKILL)
        ready = wait_status(client, "failed")
        assert ready.status_code == 503 and "exited with code -9" in ready.json()["error"]
        state = app.state.service
        # said as what it is, not as a load failure
        assert cli.failure_line(state).startswith("the model process stopped while serving: ")
        if keep_retrying:  # then a new process loads the model and the service is ready
            wait_status(client, "ready")
            assert app.state.service.batcher.model.pid != first.pid
            assert _pixels(client).shape == (2, 32, 32, 3)
            assert stops == []
        else:
            assert stops == [True]  # xmc-serve stops, exit code 1: the orchestrator restarts it


def test_a_request_whose_model_process_died_is_503_not_500(make_client: Any) -> None:
    from tests.service.fakes import FakePipeline

    class Dying(FakePipeline):
        def generate(self, *args: Any, **kwargs: Any) -> Any:
            raise ModelProcessExited("the model process exited with code -9")

    with make_client(Dying(), warmup=False) as client:
        response = client.post("/v1/images/generations", json={"prompt": "x"})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "model_not_ready"
    assert response.headers["retry-after"] == "1"


def test_a_cancelled_call_leaves_the_process_serving(tiny_artifact: Path) -> None:
    import logging

    host = ProcessHost(Settings(model_dir=str(tiny_artifact), device="cpu"), logging.WARNING)
    try:
        host.start()
        dropped = host.generate(["a red circle"], [1], 1.0, False)
        assert dropped.cancel()  # as a stopped batcher's await does
        kept = host.generate(["a blue square"], [2], 1.0, False)
        assert kept.result(timeout=60).pixels.shape == (1, 32, 32, 3)
    finally:
        host.close()
    assert not host._process.is_alive()
    with pytest.raises(ModelProcessExited):  # a call after close fails, it does not hang
        host.generate(["x"], [3], 1.0, False).result(timeout=10)


def test_a_stopped_model_process_is_seen_and_its_requests_answered_503(
    tiny_artifact: Path,
) -> None:
    settings = Settings(model_dir=str(tiny_artifact), warmup=False, model_timeout_s=1.0)
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client)
        pid = app.state.service.batcher.model.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            waiting = client.post("/v1/images/generations", json={"prompt": "a red circle"})
            assert waiting.status_code == 503, waiting.text  # a deadline, not a hang
            assert time.monotonic() - started < 10
            assert waiting.headers["retry-after"] == "1"
            ready = wait_status(client, "stalled", timeout_s=10)
            assert ready.status_code == 503 and "not answered" in ready.json()["error"]
            refused = client.post("/v1/images/generations", json={"prompt": "a red circle"})
            assert refused.status_code == 503
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_status(client, "ready", timeout_s=20)  # it answers again: ready again
        assert _pixels(client).shape == (2, 32, 32, 3)


@pytest.mark.parametrize("model_id", ["bad\nid", "esc\x1b[31m", "nul\x00", "  "])
def test_a_model_id_with_control_characters_is_refused_at_load(
    make_client: Any, model_id: str
) -> None:
    from tests.service.fakes import FakePipeline

    fake = FakePipeline()
    fake.model_id = model_id
    app = create_app(Settings(warmup=False), pipeline=fake)
    stops: list[bool] = []
    app.state.service.on_failure = lambda: stops.append(True)
    with TestClient(app) as client:
        ready = wait_status(client, "failed")
    assert stops == [True]
    error = ready.json()["error"]
    assert "control characters" in error and "\n" not in error and "\x1b" not in error
