"""Settings from the environment, xmc-serve's flags and errors, loading from a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import wait_ready, wait_status
from tests.service.fakes import FakePipeline
from xmc_service import cli
from xmc_service.app import create_app
from xmc_service.settings import Settings


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMC_MODEL_DIR", "/models/a")
    monkeypatch.setenv("XMC_DEVICE", "cpu")
    monkeypatch.setenv("XMC_MAX_BATCH_IMAGES", "48")
    monkeypatch.setenv("XMC_MAX_WAIT_MS", "7.5")
    monkeypatch.setenv("XMC_MAX_QUEUE_IMAGES", "100")
    monkeypatch.setenv("XMC_API_KEYS", "k1, k2,")
    monkeypatch.setenv("XMC_CORS_ORIGINS", "https://a.example")
    settings = Settings()
    assert (settings.model_dir, settings.device) == ("/models/a", "cpu")
    assert (settings.max_batch_images, settings.max_wait_ms, settings.max_queue_images) == (
        48,
        7.5,
        100,
    )
    assert settings.api_keys == ["k1", "k2"]
    assert settings.cors_origins == ["https://a.example"]


def test_flags_override_the_environment_and_reach_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tiny_artifact: Path
) -> None:
    monkeypatch.setenv("XMC_PORT", "9999")
    monkeypatch.setenv("XMC_MAX_BATCH_IMAGES", "3")
    monkeypatch.setenv("XMC_WORKERS", "1")  # one process: the app is built here
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        cli, "run_server", lambda app, settings, level: calls.append((app, settings))
    )
    assert cli.main(["--model", str(tiny_artifact), "--port", "8123", "--host", "0.0.0.0"]) == 0
    app, settings = calls[0]
    assert (settings.host, settings.port) == ("0.0.0.0", 8123)
    assert cli.server_options(settings)["limit_concurrency"] is None  # the guard answers 429
    settings = app.state.service.settings
    assert (settings.model_dir, settings.max_batch_images) == (str(tiny_artifact), 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/no/such/folder"], "no such folder"),
        (["--model", "."], "no config.json"),
        (["--port", "70000"], "port"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_bad_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XMC_MAX_BATCH_IMAGES", "zero")
    assert cli.main([]) == 2
    assert "max_batch_images" in capsys.readouterr().err


def test_the_lifespan_loads_the_model_folder_and_warms_up(tiny_artifact: Path) -> None:
    app = create_app(Settings(model_dir=str(tiny_artifact), device="cpu", max_batch_images=4))
    with TestClient(app) as client:
        wait_ready(client)
        assert client.get("/v1/models").json()["data"][0]["id"] == "xmc-tiny"
        response = client.post("/v1/images/generations", json={"prompt": "a ring", "seed": 2})
        assert response.status_code == 200
    assert app.state.service.batcher is None  # the lifespan stopped the worker on shutdown


@pytest.mark.parametrize(("warmup", "batches"), [(True, [1, 2, 4, 6]), (False, [])])
def test_ready_only_after_the_warm_up_forwards(warmup: bool, batches: list[int]) -> None:
    fake = FakePipeline()
    app = create_app(Settings(max_batch_images=6, warmup=warmup), pipeline=fake)
    with TestClient(app) as client:
        wait_ready(client)
        assert fake.batch_sizes == batches


def test_torch_threads_apply_on_the_model_thread() -> None:
    import torch

    fake = FakePipeline()
    before = torch.get_num_threads()
    try:
        app = create_app(Settings(max_batch_images=2, torch_threads=1), pipeline=fake)
        with TestClient(app) as client:
            wait_ready(client)
            client.post("/v1/images/generations", json={"prompt": "x"})
    finally:
        torch.set_num_threads(before)
    assert fake.threads_seen == [1, 1, 1]  # warm-up at 1 and 2, then the request


def test_cuda_without_a_gpu_fails_readiness_not_the_process(tiny_artifact: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    app = create_app(Settings(model_dir=str(tiny_artifact), device="cuda"))
    with TestClient(app) as client:
        assert "no CUDA GPU" in wait_status(client, "failed").json()["error"]
