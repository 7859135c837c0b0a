"""The app factory. The model loads in the lifespan, in the background, so the server answers
/health/live at once and /health/ready turns 200 only after loading and warm-up
(xmc_service.lifecycle); in an HTTP worker of several, the lifespan connects to the engine
process instead (xmc_service.engine)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from xmc_service import lifecycle
from xmc_service.errors import install_error_handlers
from xmc_service.front import Front
from xmc_service.imaging import ImageStore, SharedImageStore
from xmc_service.metrics import make_metrics
from xmc_service.middleware import OpenAICORSMiddleware
from xmc_service.model_host import Pipeline
from xmc_service.routes import generate, health, images, interpolations, models, page
from xmc_service.settings import Settings
from xmc_service.state import ServiceState

GIL_SWITCH_INTERVAL_S = 0.0005


class XMCApp(FastAPI):
    """FastAPI behind the front (xmc_service.front), which every HTTP request meets first."""

    front: Front | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.front is not None:
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def full_stack(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)


def _lifespan(pipeline: Pipeline | None, engine: Callable[[ServiceState], Any] | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: ServiceState = app.state.service
        if engine is not None:  # an HTTP worker: the engine process holds the model
            remote = engine(state)
            await remote.start()
            try:
                yield
            finally:
                remote.close()
            return
        # A model on a thread of this process (ThreadHost) gives the GIL back at every torch
        # op and must win it back from the busy event loop each time; at the default 5 ms
        # interval that wait can cost more than the op (measured: up to 8x slower forwards
        # under load), at 0.5 ms it is small. A model in its own process shares no GIL.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, GIL_SWITCH_INTERVAL_S))
        loaders = [asyncio.create_task(lifecycle.load_and_warm(state, pipeline))]
        state.reload = lambda: loaders.append(
            asyncio.create_task(lifecycle.load_and_warm(state, pipeline))
        )
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


def create_app(
    settings: Settings | None = None,
    pipeline: Pipeline | None = None,
    engine: Callable[[ServiceState], Any] | None = None,
    images_folder: str | None = None,
) -> XMCApp:
    """The service. `pipeline` (tests) replaces loading `settings.model_dir`; `engine` (an HTTP
    worker of several) makes the batcher a connection to the shared engine process, and
    `images_folder` the store of `url` images one the workers share."""
    settings = settings or Settings()
    app = XMCApp(
        title="xmc",
        summary="XMC-GAN text-to-image: OpenAI-compatible Images API with dynamic batching.",
        version="0.1.0",
        lifespan=_lifespan(pipeline, engine),
        redirect_slashes=False,  # the front redirects, with a relative Location
    )
    state = ServiceState(
        settings=settings,
        metrics=make_metrics(),
        images=(
            SharedImageStore(images_folder, settings.image_ttl_s, settings.image_store_size)
            if images_folder is not None
            else ImageStore(settings.image_ttl_s, settings.image_store_size)
        ),
    )
    app.state.service = state
    install_error_handlers(app)
    for module in (images, generate, interpolations, models, health, page):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            OpenAICORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after", "x-seeds", "x-xmc-lengths"],
        )
    app.front = Front(app, state)
    return app
