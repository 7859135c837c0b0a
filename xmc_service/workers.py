"""Starting and watching the HTTP worker processes in front of the engine (XMC_WORKERS >= 2):
their sockets (SO_REUSEPORT), each worker's main, and the engine process's own loop that
serves them (`xmc_service.engine` holds the engine and the workers' side of the pipe)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
from typing import Any

from xmc_service.engine import Engine, RemoteBatcher
from xmc_service.model_host import set_process_name
from xmc_service.settings import Settings
from xmc_service.state import ServiceState

__all__ = ["bind_sockets", "serve_workers"]

logger = logging.getLogger("xmc_service")


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port (SO_REUSEPORT), one per worker; port 0 picks a
    free port for all of them."""
    sockets: list[socket.socket] = []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        sock.listen(2048)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def _worker_main(
    settings: Settings,
    sock: socket.socket,
    conn: Any,
    index: int,
    log_level: str,
    images_folder: str,
) -> None:
    """One HTTP worker: uvicorn on its socket, the app's batcher a RemoteBatcher."""
    set_process_name(f"xmc-http-{index}")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    from xmc_service.app import create_app
    from xmc_service.server import uvicorn_server

    def remote(state: ServiceState) -> RemoteBatcher:
        batcher = RemoteBatcher(state, conn)
        # it stands for the engine's Batcher in the routes (generate, interpolate, model, the
        # queue counts); the lifecycle that calls the rest never runs in an HTTP worker
        state.batcher = batcher  # type: ignore[assignment]
        return batcher

    app = create_app(settings, engine=remote, images_folder=images_folder)
    app.front.worker_header = [(b"x-xmc-worker", str(index).encode())]  # type: ignore[union-attr]
    uvicorn_server(app, settings, log_level).run(sockets=[sock])


def serve_workers(settings: Settings, log_level: str, images_folder: str) -> str | None:
    """xmc-serve with settings.workers HTTP workers and this process as the engine, until a
    signal (None) or a model that cannot load or stops (its one-line reason)."""
    from xmc_service import lifecycle
    from xmc_service.imaging import ImageStore
    from xmc_service.metrics import make_metrics
    from xmc_service.server import failure_line

    set_process_name("xmc-engine")
    pipes, workers = _start_workers(settings, log_level, images_folder)
    state = ServiceState(settings=settings, metrics=make_metrics(), images=ImageStore(1.0, 1))
    failures: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        def failed() -> None:
            failures.append(failure_line(state))
            stop.set()

        state.on_failure = failed
        engine = Engine(state, [end for end, _ in pipes])
        engine.start()
        tasks = [
            loop.create_task(lifecycle.load_and_warm(state, None)),
            loop.create_task(engine.broadcast_status()),
            loop.create_task(_watch_workers(workers, stop, failures)),
        ]
        state.reload = lambda: tasks.append(loop.create_task(lifecycle.load_and_warm(state, None)))
        await stop.wait()
        engine.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if state.batcher is not None:
            await state.batcher.stop()

    try:
        asyncio.run(run())
    finally:
        _stop_workers(workers)
    return failures[0] if failures else None


def _start_workers(
    settings: Settings, log_level: str, images_folder: str
) -> tuple[list[tuple[Any, Any]], list[Any]]:
    """Bind the sockets and spawn one HTTP worker per socket; returns the (engine end, worker
    end) pipes and the processes."""
    context = multiprocessing.get_context("spawn")
    sockets = bind_sockets(settings.host, settings.port, settings.workers)
    logger.info(
        "%d HTTP workers on http://%s:%d, one engine process",
        settings.workers,
        settings.host,
        sockets[0].getsockname()[1],
    )
    pipes = [context.Pipe() for _ in range(settings.workers)]
    workers = []
    for index, (sock, (_, worker_end)) in enumerate(zip(sockets, pipes, strict=True)):
        process = context.Process(
            target=_worker_main,
            args=(settings, sock, worker_end, index, log_level, images_folder),
            name=f"xmc-http-{index}",
            daemon=True,
        )
        process.start()
        worker_end.close()
        sock.close()  # the worker holds its own copy
        workers.append(process)
    return pipes, workers


def _stop_workers(workers: list[Any]) -> None:
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=15)
        if process.is_alive():
            process.kill()


async def _watch_workers(workers: list[Any], stop: asyncio.Event, failures: list[str]) -> None:
    """A worker that dies stops the service (exit 1): an orchestrator restarts it whole."""
    while True:
        await asyncio.sleep(0.5)
        for process in workers:
            if not process.is_alive():
                failures.append(f"HTTP worker {process.name} exited with code {process.exitcode}")
                stop.set()
                return
