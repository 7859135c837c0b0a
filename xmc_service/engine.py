"""Several HTTP worker processes in front of one engine, which batches across all of them.

    xmc-serve (XMC_WORKERS=N >= 2)
      ├─ xmc-http-0 … xmc-http-N-1   uvicorn + the app; each its own listening socket on the
      │                               same port (SO_REUSEPORT: the kernel spreads connections)
      └─ this process: xmc-engine     the one Batcher and the model's lifecycle
           └─ xmc-model               the model (settings.model_process), as with one worker

A worker's app holds a `RemoteBatcher` where a lone server holds its `Batcher`: the same calls
(generate, interpolate, queued_images), sent down a pipe to the engine as (kind, id, ...)
tuples, answered by id, so images from every worker share the engine's batches. The engine
broadcasts its status (loading / ready / stalled / failed, queue depth) to every worker a few
times a second; /health/ready and 503s in a worker follow it. Starting and watching the
processes is `xmc_service.workers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from xmc_service.batcher import GeneratedImage, QueueFull
from xmc_service.model_host import (
    ModelError,
    ModelProcessExited,
    ModelStalled,
    describe_failure,
)
from xmc_service.state import ServiceState

logger = logging.getLogger("xmc_service")

STATUS_INTERVAL_S = 0.2


@dataclass(frozen=True)
class RemoteModel:
    """What the routes read of the model (`Batcher.model`), as the engine reported it."""

    model_id: str
    resolution: int


class RemoteBatcher:
    """The engine's batcher, seen from an HTTP worker (the routes' `state.batcher`)."""

    def __init__(self, state: ServiceState, conn: Any) -> None:
        self._state = state
        self._conn = conn
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox = Outbox(conn, self._engine_gone)
        self.model = RemoteModel("", 0)
        self.max_queue_images = state.settings.max_queue_images
        self.queued_images = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, name="xmc-engine-reader", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()

    async def generate(
        self,
        captions: list[str],
        seeds: list[int],
        truncation: float = 1.0,
        attention: bool = False,
    ) -> list[GeneratedImage]:
        return unpack(await self._call("generate", captions, seeds, truncation, attention))

    async def interpolate(
        self, captions: tuple[str, str], seeds: tuple[int, int], frames: int, truncation: float
    ) -> np.ndarray:
        return await self._call("interpolate", captions, seeds, frames, truncation)

    async def _call(self, kind: str, *args: Any) -> Any:
        number = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        try:
            self._outbox.send((kind, number, *args))
            return await future
        except asyncio.CancelledError:
            self._outbox.send(("cancel", number))  # the engine drops its unstarted images
            raise
        finally:
            self._waiting.pop(number, None)

    def _read(self) -> None:
        """On a thread of its own (uvloop would make the pipe non-blocking if the loop watched
        it): each message, a list of answers, is handed to the loop in one wake-up."""
        assert self._loop is not None
        while True:
            try:
                messages = self._conn.recv()
            except (EOFError, OSError):
                break
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._answer_all, messages)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._engine_gone)

    def _answer_all(self, messages: list[tuple[Any, ...]]) -> None:
        for message in messages:
            self._answer(message)

    def _answer(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "status":
            _, status, error, model_id, resolution, queued = message
            self._state.status, self._state.error = status, error
            self.model = RemoteModel(model_id, resolution)
            self.queued_images = queued
            return
        future = self._waiting.get(message[1])
        if future is None or future.done():
            return
        if kind == "ok":
            future.set_result(message[2])
        else:
            future.set_exception(_error(kind, message[2]))

    def _engine_gone(self) -> None:
        self._state.status, self._state.error = "failed", "the engine process is gone"
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ModelProcessExited("the engine process is gone"))


Packed = tuple[tuple[int, ...], bytes, list[int], list[list[str]], list[Any] | None]


def pack(images: list[GeneratedImage]) -> Packed:
    """A request's images as they cross the pipe to its worker: the pixels as one buffer (the
    images back to back) beside the per-image seeds, tokens and maps. Pickling one ndarray per
    image cost 7.5 us to send and 3.6 us to receive; a bytes object 1.5 and 1.2 (32 px)."""
    # each image a row of its batch's C-contiguous (B, H, W, 3) array, so tobytes() is one copy
    pixels = b"".join([image.pixels.tobytes() for image in images])
    maps = [image.attention for image in images] if images[0].attention is not None else None
    tokens = [image.tokens for image in images]
    return images[0].pixels.shape, pixels, [image.seed for image in images], tokens, maps


def unpack(packed: Packed) -> list[GeneratedImage]:
    """`pack`'s images again, each a read-only (H, W, 3) view of the one buffer."""
    shape, buffer, seeds, tokens, maps = packed
    pixels = np.frombuffer(buffer, np.uint8).reshape(len(seeds), *shape)  # (B, H, W, 3)
    return [
        GeneratedImage(pixels[row], seed, tokens[row], maps[row] if maps else None)
        for row, seed in enumerate(seeds)
    ]


class Outbox:
    """Messages to one pipe, sent together once per turn of the event loop: one pickle and one
    write for every request (or answer) of that turn instead of one each."""

    def __init__(self, conn: Any, on_broken: Any = None) -> None:
        self._conn = conn
        self._queued: list[tuple[Any, ...]] = []
        self._on_broken = on_broken

    def send(self, message: tuple[Any, ...]) -> None:
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(message)

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        try:
            self._conn.send(queued)
        except (OSError, ValueError):
            if self._on_broken is not None:
                self._on_broken()


def _error(kind: str, detail: Any) -> Exception:
    if kind == "full":
        return QueueFull(detail)
    if kind == "exited":
        return ModelProcessExited(detail)
    if kind == "stalled":
        return ModelStalled(detail)
    return ModelError(detail)


def _outcome_of(error: BaseException) -> tuple[str, Any]:
    if isinstance(error, QueueFull):
        return "full", error.retry_after_s
    if isinstance(error, ModelProcessExited):
        return "exited", str(error)
    if isinstance(error, ModelStalled):
        return "stalled", str(error)
    return "error", describe_failure(error)


class Engine:
    """The engine's side of the worker pipes: each call runs on the one batcher."""

    def __init__(self, state: ServiceState, conns: list[Any]) -> None:
        self.state = state
        self.conns = conns
        # each call's queued job (generate) or task (interpolate), to drop on a cancel
        self._calls: dict[tuple[int, int], Any] = {}
        self._outboxes = [Outbox(conn) for conn in conns]

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for index, conn in enumerate(self.conns):
            loop.add_reader(conn.fileno(), self._receive, index)

    def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(conn.fileno())
        for call in self._calls.values():
            if isinstance(call, asyncio.Task):
                call.cancel()

    def _receive(self, index: int) -> None:
        conn = self.conns[index]
        try:
            while conn.poll():
                for message in conn.recv():
                    self._start_call(index, message)
        except (EOFError, OSError):  # that worker is gone
            asyncio.get_running_loop().remove_reader(conn.fileno())

    def _start_call(self, index: int, message: tuple[Any, ...]) -> None:
        kind, number, args = message[0], message[1], message[2:]
        key = (index, number)
        if kind == "cancel":
            call = self._calls.pop(key, None)
            if isinstance(call, asyncio.Task):
                call.cancel()
            elif call is not None and self.state.batcher is not None:
                self.state.batcher.drop(call)  # its unstarted images are dropped
            return
        batcher = self.state.batcher
        try:
            if batcher is None or self.state.status != "ready":
                raise ModelStalled(self.state.error or "the model is not ready")
            if kind == "generate":
                # no task or future per request: the batcher hands the images to the reply
                answer = functools.partial(self._reply, key, pack)
                captions, seeds, truncation, attention = args
                self._calls[key] = batcher.submit(
                    captions, seeds, truncation, attention, on_done=answer
                )
            else:
                task = asyncio.get_running_loop().create_task(batcher.interpolate(*args))
                task.add_done_callback(functools.partial(self._task_done, key))
                self._calls[key] = task
        except Exception as error:
            outcome, detail = _outcome_of(error)
            self._outboxes[index].send((outcome, number, detail))

    def _task_done(self, key: tuple[int, int], task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._calls.pop(key, None)
            return
        error = task.exception()
        self._reply(key, None, None if error else task.result(), error)

    def _reply(
        self, key: tuple[int, int], convert: Any, result: Any, error: BaseException | None
    ) -> None:
        """The call's answer to its worker: ok (its result, converted), or the error's kind."""
        self._calls.pop(key, None)
        if error is None:
            reply: tuple[Any, ...] = ("ok", key[1], convert(result) if convert else result)
        else:
            outcome, detail = _outcome_of(error)
            reply = (outcome, key[1], detail)
        self._outboxes[key[0]].send(reply)

    async def broadcast_status(self) -> None:
        while True:
            state, batcher = self.state, self.state.batcher
            model = getattr(batcher, "model", None)
            status = (
                "status",
                state.status,
                state.error,
                getattr(model, "model_id", ""),
                getattr(model, "resolution", 0),
                batcher.queued_images if batcher is not None else 0,
            )
            for outbox in self._outboxes:
                outbox.send(status)
            if batcher is not None:
                state.metrics.queue_images.set(batcher.queued_images)
            await asyncio.sleep(STATUS_INTERVAL_S)
