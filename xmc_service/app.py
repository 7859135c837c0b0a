"""The app factory. The model loads in the lifespan, in the background, so the server answers
/health/live at once and /health/ready turns 200 only after loading and a warm-up forward."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from xmc_service.batcher import Batcher
from xmc_service.errors import install_error_handlers
from xmc_service.imaging import ImageStore
from xmc_service.metrics import make_metrics
from xmc_service.middleware import (
    BodyLimitMiddleware,
    OpenAICORSMiddleware,
    RequestIdMiddleware,
)
from xmc_service.routes import generate, health, images, interpolations, models, page
from xmc_service.settings import Settings
from xmc_service.state import ServiceState, load_pipeline
from xmc_service.worker import (
    ModelHost,
    ModelProcessExited,
    Pipeline,
    ProcessHost,
    ThreadHost,
    describe_failure,
)

logger = logging.getLogger("xmc_service")

GIL_SWITCH_INTERVAL_S = 0.0005


async def _open_model(state: ServiceState, pipeline: Pipeline | None) -> ModelHost:
    """The model, loaded: a pipeline handed in runs on a thread; one loaded from the settings
    runs in a process of its own (settings.model_process) or on a thread."""
    settings = state.settings
    if pipeline is not None:
        return ThreadHost.around(pipeline, settings.text_cache_size)
    if not settings.model_process:
        # Load on a throwaway thread: the model's own thread is made for the model.
        loaded = await asyncio.to_thread(load_pipeline, settings)
        return ThreadHost.around(loaded, settings.text_cache_size)
    loop = asyncio.get_running_loop()

    def exited(reason: str) -> None:  # on the host's reader thread
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone
            loop.call_soon_threadsafe(_model_exited, state, reason)

    host = ProcessHost(settings, logger.getEffectiveLevel(), on_exit=exited)
    try:
        await asyncio.to_thread(host.start)
    except BaseException:
        host.close()
        raise
    return host


def _model_exited(state: ServiceState, reason: str) -> None:
    """The model's process died while serving: not ready; exit 1, or load again. (Dying while
    it loads or warms up fails that load, which `_load_and_warm` handles.)"""
    if state.status != "ready":
        return
    state.status, state.error = "failed", reason
    logger.error("%s", reason)
    if state.batcher is not None:  # its running batches have failed with the process
        state.batcher.fail_queued(ModelProcessExited(reason))
    if state.settings.keep_retrying:
        state.reload()
    elif state.on_failure is not None:
        state.on_failure()


async def _start(state: ServiceState, pipeline: Pipeline | None) -> None:
    settings = state.settings
    if state.batcher is not None:  # a reload after the model's process died
        await state.batcher.stop()
        state.batcher = None
    batcher = Batcher(
        await _open_model(state, pipeline),
        max_batch_images=settings.max_batch_images,
        max_wait_ms=settings.max_wait_ms,
        max_queue_images=settings.max_queue_images,
        metrics=state.metrics,
    )
    try:
        await batcher.set_threads(settings.torch_threads)
        if settings.warmup:
            await batcher.warmup()
    except BaseException:
        await batcher.stop()
        raise
    batcher.start()
    state.batcher, state.status, state.error = batcher, "ready", None
    logger.info(
        "ready: %s at %d px, batches of up to %d images",
        batcher.model.model_id,
        batcher.model.resolution,
        settings.max_batch_images,
    )


async def _load_and_warm(state: ServiceState, pipeline: Pipeline | None) -> None:
    """Load until it works (keep_retrying) or once: a failure then calls state.on_failure,
    which xmc-serve sets to stop the server, so the process exits 1."""
    while True:
        try:
            await _start(state, pipeline)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            state.status, state.error = "failed", describe_failure(error)
            logger.error("the model failed to load: %s", state.error)
            logger.debug("the load failure's traceback", exc_info=True)
        if not state.settings.keep_retrying:
            if state.on_failure is not None:
                state.on_failure()
            return
        await asyncio.sleep(state.settings.retry_s)


def _lifespan(pipeline: Pipeline | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: ServiceState = app.state.service
        # A model on a thread of this process (ThreadHost) gives the GIL back at every torch
        # op and must win it back from the busy event loop each time; at the default 5 ms
        # interval that wait can cost more than the op (measured: up to 8x slower forwards
        # under load), at 0.5 ms it is small. A model in its own process shares no GIL.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, GIL_SWITCH_INTERVAL_S))
        loaders = [asyncio.create_task(_load_and_warm(state, pipeline))]
        state.reload = lambda: loaders.append(asyncio.create_task(_load_and_warm(state, pipeline)))
        try:
            yield
        finally:
            sys.setswitchinterval(switch_interval)
            for loader in loaders:
                loader.cancel()
            await asyncio.gather(*loaders, return_exceptions=True)
            if state.batcher is not None:
                await state.batcher.stop()
                state.batcher = None
            state.status = "loading"

    return lifespan


def create_app(settings: Settings | None = None, pipeline: Pipeline | None = None) -> FastAPI:
    """The service. `pipeline` (tests) replaces loading `settings.model_dir`."""
    settings = settings or Settings()
    app = FastAPI(
        title="xmc",
        summary="XMC-GAN text-to-image: OpenAI-compatible Images API with dynamic batching.",
        version="0.1.0",
        lifespan=_lifespan(pipeline),
    )
    app.state.service = ServiceState(
        settings=settings,
        metrics=make_metrics(),
        images=ImageStore(settings.image_ttl_s, settings.image_store_size),
    )
    install_error_handlers(app)
    routers = (images, generate, interpolations, models, health, page)
    for module in routers:
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            OpenAICORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after", "x-seeds"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # outermost: every response gets an id
    return app
