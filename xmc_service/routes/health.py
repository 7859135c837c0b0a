"""Liveness, readiness and Prometheus metrics; open even when API keys are set."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xmc_service.batcher import Batcher
from xmc_service.deps import StateDep

router = APIRouter(tags=["health"])


@router.head("/health/live", include_in_schema=False)
@router.get("/health/live")
async def live() -> dict[str, str]:
    """200 while the process serves HTTP."""
    return {"status": "ok"}


@router.head("/health/ready", include_in_schema=False)
@router.get("/health/ready", responses={503: {"description": "Loading, or failed to load."}})
async def ready(state: StateDep) -> JSONResponse:
    """200 once the model is loaded and warmed up; 503 before, while it does not answer
    (stalled), or if it failed."""
    body: dict[str, object] = {"status": state.status}
    if state.status == "ready" and state.batcher is not None:
        body["model"] = state.batcher.model.model_id
        body["queued_images"] = state.batcher.queued_images
    if state.error:
        body["error"] = state.error
    return JSONResponse(body, status_code=200 if state.status == "ready" else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus text; with several HTTP workers, summed over them and the engine."""
    if isinstance(state.batcher, Batcher):  # a worker of several: the engine sets it
        state.metrics.queue_images.set(state.batcher.queued_images)
    return Response(generate_latest(state.metrics.scrape), media_type=CONTENT_TYPE_LATEST)
