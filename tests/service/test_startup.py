"""A model that cannot be loaded (issue 13): xmc-serve exits 1 with one line naming the file,
or, with --keep-retrying, stays up answering 503 and loads once the folder is fixed."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import wait_status
from xmc_service import cli
from xmc_service.app import create_app
from xmc_service.settings import Settings


def broken_copy(tiny_artifact: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(tiny_artifact, directory)
    data = json.loads((directory / "config.json").read_text())
    data["generator"]["rho0"] = float("nan")
    (directory / "config.json").write_text(json.dumps(data))
    return directory


@pytest.mark.parametrize("workers", ["1", "2"])
def test_xmc_serve_exits_1_when_the_model_cannot_load(
    tiny_artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: str,
) -> None:
    monkeypatch.setenv("XMC_WORKERS", workers)  # one process, or two HTTP workers and the engine
    directory = broken_copy(tiny_artifact, tmp_path)
    started = time.monotonic()
    assert cli.main(["--model", str(directory), "--port", "0", "--log-level", "warning"]) == 1
    assert time.monotonic() - started < 30
    lines = [line for line in capsys.readouterr().err.splitlines() if "xmc-serve:" in line]
    assert len(lines) == 1, lines
    assert str(directory / "config.json") in lines[0] and "rho0" in lines[0]
    assert "Traceback" not in lines[0]


def test_keep_retrying_stays_up_and_recovers(tiny_artifact: Path, tmp_path: Path) -> None:
    directory = broken_copy(tiny_artifact, tmp_path)
    stops: list[bool] = []
    settings = Settings(model_dir=str(directory), keep_retrying=True, retry_s=0.05, warmup=False)
    app = create_app(settings)
    app.state.service.on_failure = lambda: stops.append(True)
    with TestClient(app) as client:
        ready = wait_status(client, "failed")
        assert ready.status_code == 503 and "rho0" in ready.json()["error"]
        shutil.copy(tiny_artifact / "config.json", directory / "config.json")  # fixed
        assert wait_status(client, "ready").status_code == 200
    assert stops == []  # never asked to stop


def test_without_keep_retrying_a_failure_asks_to_stop(tiny_artifact: Path, tmp_path: Path) -> None:
    stops: list[bool] = []
    app = create_app(Settings(model_dir=str(broken_copy(tiny_artifact, tmp_path))))
    app.state.service.on_failure = lambda: stops.append(True)
    with TestClient(app) as client:
        wait_status(client, "failed")
        assert stops == [True]
        assert client.get("/health/ready").json()["status"] == "failed"


def test_the_server_says_what_it_does_while_it_loads(
    tiny_artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(model_dir=str(tiny_artifact), max_batch_images=2, device="cpu")
    with caplog.at_level(logging.INFO, logger="xmc_service"):
        with TestClient(create_app(settings)) as client:
            wait_status(client, "ready")
    said = [record.getMessage() for record in caplog.records]
    steps = ["starting the model process", "warm-up forward at batch 1", "warm-up forward at "
             "batch 2", "ready: "]  # fmt: skip
    positions = [next(i for i, line in enumerate(said) if line.startswith(s)) for s in steps]
    assert positions == sorted(positions), said
