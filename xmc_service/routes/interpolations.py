"""Native interpolation: one caption and seed to another, in N frames, as an animation."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import Response

from xmc_service.deps import BatcherDep, StateDep
from xmc_service.errors import APIError
from xmc_service.imaging import ANIMATION_TYPES, encode_animation
from xmc_service.routes._generation import check_model, random_seeds
from xmc_service.routes.images import ERRORS
from xmc_service.schemas import InterpolationRequest

router = APIRouter(prefix="/v1", tags=["interpolations"])


@router.post(
    "/interpolations",
    response_class=Response,
    responses={
        200: {
            "content": {media_type: {} for media_type in ANIMATION_TYPES.values()},
            "description": "The animation; x-seeds holds the two seeds, from and to.",
        },
        **ERRORS,
    },
)
async def interpolate(body: InterpolationRequest, batcher: BatcherDep, state: StateDep) -> Response:
    """Frame k of N shows t = k / (N - 1) of the way: text features lerped, z slerped. The
    first and last frames are the endpoints' own images (as /v1/generate draws them)."""
    started = time.perf_counter()
    check_model(body.model, batcher)
    captions = (body.captions[0], body.captions[-1])
    first = random_seeds(1)[0]
    chosen = body.seeds or [first, first + 1 + random_seeds(1)[0]]  # two distinct random seeds
    seeds = (chosen[0], chosen[-1])
    if captions[0] == captions[1] and seeds[0] == seeds[1]:
        raise APIError(
            400,
            "Nothing to interpolate: give two captions, two seeds, or both.",
            param="seeds",
            code="invalid_value",
        )
    frames = await batcher.interpolate(captions, seeds, body.frames, body.truncation)
    data = await asyncio.to_thread(encode_animation, frames, body.output_format, body.frame_ms)
    state.metrics.images_generated.inc(len(frames))
    state.metrics.request_seconds.labels(endpoint="interpolations").observe(
        time.perf_counter() - started
    )
    headers = {"x-seeds": f"{seeds[0]},{seeds[1]}"}
    return Response(data, media_type=ANIMATION_TYPES[body.output_format], headers=headers)
