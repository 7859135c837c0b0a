"""The app factory. The model loads in the lifespan, in the background, so the server answers
/health/live at once and /health/ready turns 200 only after loading and a warm-up forward."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from xmc_service.batcher import Batcher, Pipeline
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

logger = logging.getLogger("xmc_service")

GIL_SWITCH_INTERVAL_S = 0.0005


def default_threads(pipeline: Pipeline) -> int | None:
    """On the CPU, one model thread per core but one, which the HTTP side keeps: on 2 cores
    two model threads spin against the event loop (measured 2.5x slower per forward under
    load, docs/service.md). None (torch's default) on a GPU."""
    import os

    device = getattr(pipeline, "device", None)
    if device is None or getattr(device, "type", str(device)) != "cpu":
        return None
    return max(1, (os.cpu_count() or 1) - 1)


async def _start(state: ServiceState, pipeline: Pipeline | None) -> None:
    settings = state.settings
    batcher: Batcher | None = None
    try:
        if pipeline is None:
            # Load on a throwaway thread: the batcher's worker thread is made for the model.
            pipeline = await asyncio.to_thread(load_pipeline, settings)
        batcher = Batcher(
            pipeline,
            max_batch_images=settings.max_batch_images,
            max_wait_ms=settings.max_wait_ms,
            max_queue_images=settings.max_queue_images,
            text_cache_size=settings.text_cache_size,
            metrics=state.metrics,
        )
        threads = settings.torch_threads or default_threads(pipeline)
        if threads is not None:
            await batcher.set_threads(threads)
        if settings.warmup:
            await batcher.warmup()
    except BaseException:
        if batcher is not None:
            await batcher.stop()
        raise
    batcher.start()
    state.batcher, state.status, state.error = batcher, "ready", None
    logger.info(
        "ready: %s at %d px, batches of up to %d images",
        pipeline.model_id,
        pipeline.resolution,
        settings.max_batch_images,
    )


def describe_failure(error: BaseException) -> str:
    """One line: an ArtifactError already names its file; anything else gets its type."""
    from models import ArtifactError, one_line

    if isinstance(error, ArtifactError):
        return one_line(error)
    return f"{type(error).__name__}: {one_line(error)}"


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
        # The model thread gives the GIL back at every torch op and must win it back from the
        # busy event loop each time; at the default 5 ms interval that wait can cost more than
        # the op (measured: up to 8x slower forwards under load), at 0.5 ms it is small.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, GIL_SWITCH_INTERVAL_S))
        loading = asyncio.create_task(_load_and_warm(state, pipeline))
        try:
            yield
        finally:
            sys.setswitchinterval(switch_interval)
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
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
