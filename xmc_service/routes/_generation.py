"""What both generation endpoints share: the model check, seeds, queueing, client disconnects,
encoding. Each endpoint's work is one function from a validated body to the answer's bytes,
reached through FastAPI (the OpenAPI schema, CORS) or the front's fast path (xmc_service.front)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from xmc_service.batcher import Batcher, GeneratedImage
from xmc_service.errors import APIError
from xmc_service.imaging import encode_image
from xmc_service.state import ServiceState

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]  # starlette's (ASGI) receive


def ready_batcher(state: ServiceState) -> Batcher:
    """The model's batcher, or 503 while the model is loading, stalled or failed."""
    if state.status != "ready" or state.batcher is None:
        message = {
            "loading": "The model is still loading; retry shortly.",
            "stalled": "The model has stopped answering; retry shortly.",
        }.get(state.status, "The model failed to load; see the server log.")
        raise APIError(
            503, message, kind="server_error", code="model_not_ready", headers={"Retry-After": "1"}
        )
    return state.batcher


def check_model(requested: str | None, batcher: Batcher) -> None:
    served = batcher.model.model_id
    if requested is not None and requested != served:
        raise APIError(
            404,
            f"The model '{requested}' does not exist; this server serves '{served}'.",
            param="model",
            code="model_not_found",
        )


def random_seeds(count: int) -> list[int]:
    return [secrets.randbelow(2**32) for _ in range(count)]


async def _until_disconnected(receive: Receive) -> None:
    """Returns once the client has gone (the body is read by then, so only that can arrive)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def generate_or_drop(
    receive: Receive,
    batcher: Batcher,
    captions: list[str],
    seeds: list[int],
    truncation: float,
    attention: bool = False,
) -> list[GeneratedImage]:
    """Queue the images and wait (a full queue raises QueueFull: 429); a departed client drops
    its work."""
    if len(captions) > batcher.max_queue_images:
        raise APIError(
            400,
            f"The request asks for {len(captions)} images; this server queues at most "
            f"{batcher.max_queue_images}.",
            param="n",
            code="too_many_images",
        )
    work = asyncio.ensure_future(batcher.generate(captions, seeds, truncation, attention))
    gone = asyncio.ensure_future(_until_disconnected(receive))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()  # the batcher drops the images that have not started
    if not work.done() or work.cancelled():
        raise APIError(499, "The client closed the request.", code="client_disconnected")
    return work.result()


# Below this many pixels in a response, encoding (~0.05 ms per 32x32 PNG) costs less than the
# two thread switches of sending it to a thread, which on a busy CPU can each take milliseconds.
INLINE_ENCODE_PIXELS = 64 * 64 * 4


async def encode_all(images: list[GeneratedImage], output_format: str) -> list[bytes]:
    """Small responses inline; larger ones off the event loop (zlib releases the GIL)."""

    def encode() -> list[bytes]:
        return [encode_image(image.pixels, output_format) for image in images]

    if (
        sum(image.pixels.shape[0] * image.pixels.shape[1] for image in images)
        <= INLINE_ENCODE_PIXELS
    ):
        return encode()
    return await asyncio.to_thread(encode)
