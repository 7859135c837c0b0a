"""OpenAI-compatible Images API: POST /v1/images/generations, and the short-lived image files."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from xmc_service.deps import StateDep
from xmc_service.errors import APIError
from xmc_service.imaging import MEDIA_TYPES, to_base64
from xmc_service.routes._generation import (
    Receive,
    check_model,
    encode_all,
    generate_or_drop,
    random_seeds,
    ready_batcher,
)
from xmc_service.schemas import ErrorResponse, ImageGenerationRequest, ImagesResponse
from xmc_service.state import ServiceState

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 503)
}

router = APIRouter(prefix="/v1/images", tags=["images"])


def file_url(public_url: str | None, image_id: str) -> str:
    """XMC_PUBLIC_URL + the file's path, or the path alone: never from the Host header."""
    return f"{public_url or ''}/v1/images/files/{image_id}"


def check_size(size: str | None, resolution: int) -> None:
    native = f"{resolution}x{resolution}"
    if size in (None, "auto", native):
        return
    raise APIError(
        400,
        f"Invalid 'size': {size!r}. This model draws {native} images; use 'auto' or '{native}'.",
        param="size",
        code="invalid_size",
    )


async def images_answer(
    body: ImageGenerationRequest, receive: Receive, state: ServiceState
) -> bytes:
    """The JSON of an ImagesResponse for `body` (validated)."""
    started = time.perf_counter()
    batcher = ready_batcher(state)
    check_model(body.model, batcher)
    check_size(body.size, batcher.model.resolution)
    if body.stream:
        raise APIError(400, "Streaming is not supported.", param="stream", code="unsupported")
    count = body.n or 1
    seeds = (
        [body.seed + index for index in range(count)]
        if body.seed is not None
        else random_seeds(count)
    )
    if seeds[-1] >= 2**63:
        raise APIError(400, "Invalid 'seed': seed + n - 1 must be below 2**63.", param="seed")
    images = await generate_or_drop(receive, batcher, [body.prompt] * count, seeds, body.truncation)
    output_format = body.output_format or "png"
    files = await encode_all(images, output_format)
    data = []
    for image, file in zip(images, files, strict=True):
        if body.response_format == "url":
            image_id = state.images.put(file, output_format)
            url = file_url(state.settings.public_url, image_id)
            data.append({"url": url, "revised_prompt": body.prompt, "seed": image.seed})
        else:
            encoded = to_base64(file)
            data.append({"b64_json": encoded, "revised_prompt": body.prompt, "seed": image.seed})
    state.metrics.images_generated.inc(len(images))
    state.metrics.request_seconds.labels(endpoint="images").observe(time.perf_counter() - started)
    return json.dumps({"created": int(time.time()), "data": data}).encode()


@router.post("/generations", response_model=ImagesResponse, responses=ERRORS)
async def create_images(
    body: ImageGenerationRequest, request: Request, state: StateDep
) -> Response:
    """Draw `n` images of `prompt` (the OpenAI Images API, plus `seed` and `truncation`)."""
    content = await images_answer(body, request.receive, state)
    return Response(content, media_type="application/json")


@router.get(
    "/files/{image_id}",
    response_class=Response,
    responses={
        200: {
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
            "description": "The image, as the output_format it was generated in.",
        },
        404: {"model": ErrorResponse},
    },
)
async def get_image_file(image_id: str, state: StateDep) -> Response:
    """An image from a `response_format=url` answer, for `image_ttl_s` seconds after it."""
    stored = state.images.get(image_id)
    if stored is None:
        raise APIError(
            404, "No such image (it may have expired).", param="image_id", code="not_found"
        )
    max_age = max(0, int(stored.expires - time.monotonic()))
    headers = {"Cache-Control": f"private, max-age={max_age}"}
    return Response(stored.data, media_type=stored.media_type, headers=headers)
