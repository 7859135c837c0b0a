"""The model in a process of its own (`ProcessHost`, what xmc-serve does): the host, its
reader thread and the child's main loop. Why a process, and the thread host beside it, are in
`xmc_service.model_host`."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from xmc_service import model_host
from xmc_service.model_host import (
    LocalModel,
    ModelError,
    ModelLoadError,
    ModelProcessExited,
    _TypedCalls,
    describe_failure,
    set_process_name,
)

__all__ = ["ProcessHost"]

logger = logging.getLogger("xmc_service")


class ProcessHost(_TypedCalls):
    """The model in a child process (spawned: a fresh interpreter, no inherited threads).

    Calls go down a pipe as (op, args) and come back in order; a reader thread resolves their
    futures. `start()` blocks until the child has loaded the model (raises ModelLoadError with
    the child's one-line reason otherwise). If the child dies, pending and later calls fail
    with ModelProcessExited and `on_exit(reason)` is called from the reader thread.
    """

    def __init__(
        self, settings: Any, log_level: int, on_exit: Callable[[str], None] | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_child_main, args=(child_end, settings, log_level), name="xmc-model"
        )
        self._process.daemon = True  # never outlives the server
        self._process.start()
        child_end.close()
        self._on_exit = on_exit
        self._pending: deque[Future[Any]] = deque()
        self._sent_at: deque[float] = deque()  # when each pending call went down the pipe
        self._lock = threading.Lock()
        # Two threads waiting for one child race: the one that loses sees no child and reports
        # it alive (multiprocessing's Popen.poll); so the waits take turns.
        self._reaping = threading.Lock()
        self._gone: str | None = None
        self._started = self._closing = False
        self.model_id, self.resolution, self.device_type = "", 0, "cpu"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        try:
            message = self._conn.recv()
        except (EOFError, OSError):
            message = ("failed", f"the model process exited with code {self._exit_code()}")
        if message[0] != "ready":
            self.close()
            raise ModelLoadError(message[1])
        _, self.model_id, self.resolution, self.device_type = message
        self._started = True
        threading.Thread(target=self._read, name="xmc-model-reader", daemon=True).start()

    def oldest_call_s(self) -> float:
        with self._lock:
            return time.monotonic() - self._sent_at[0] if self._sent_at else 0.0

    def _submit(self, op: str, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._gone is None:
                try:
                    self._conn.send((op, args))  # a few KB: the pipe's buffer takes it at once
                except OSError:  # the child is gone and the reader has not seen it yet
                    self._gone = "the model process exited"
                else:
                    self._pending.append(future)
                    self._sent_at.append(time.monotonic())
                    return future
        future.set_exception(ModelProcessExited(self._gone))
        return future

    def _read(self) -> None:
        while True:
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._pending.popleft()
                self._sent_at.popleft()
            _settle(future, value if status == "ok" else ModelError(value))
        reason = f"the model process exited with code {self._exit_code()}"
        with self._lock:
            self._gone, pending = reason, list(self._pending)
            self._pending.clear()
            self._sent_at.clear()
        for future in pending:
            _settle(future, ModelProcessExited(reason))
        if not self._closing and self._on_exit is not None:
            self._on_exit(reason)

    def _exit_code(self) -> int | None:
        with self._reaping:  # one thread at a time waits for the child (the reader, close)
            self._process.join(timeout=5)
            return self._process.exitcode

    def close(self) -> None:
        """Ask the child to leave (it finishes the call it is in); kill it if it is still
        loading, or has not gone after 10 s."""
        if self._closing:
            return
        self._closing = True
        if self._started:
            with contextlib.suppress(OSError, ValueError), self._lock:
                self._conn.send(None)  # the child's signal to leave
            with self._reaping:
                self._process.join(timeout=10)
        with self._reaping:
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._conn.close()


def _settle(future: Future[Any], outcome: Any) -> None:
    """Resolve `future` with `outcome` (an exception fails it), unless its caller cancelled it
    (a batcher that stopped)."""
    with contextlib.suppress(InvalidStateError):
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _child_main(conn: Any, settings: Any, log_level: int) -> None:
    """The model's process: load, say ready (or why not), then answer calls until told to go."""
    # Ctrl+C reaches the whole process group: the server stops, then closes this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_process_name("xmc-model")
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        # a module global, looked up at the call: the HTTP-side benchmark stands in a model
        model = LocalModel(model_host.load_pipeline(settings), settings.text_cache_size)
    except Exception as error:
        conn.send(("failed", describe_failure(error)))
        return
    conn.send(("ready", model.model_id, model.resolution, model.device_type))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if message is None:
            return
        op, args = message
        try:
            conn.send(("ok", getattr(model, op)(*args)))
        except Exception as error:
            logger.exception("the model's %s call failed", op)
            conn.send(("error", describe_failure(error)))
