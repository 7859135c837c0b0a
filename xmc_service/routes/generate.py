"""Native generation: several captions per request, per-image seeds, word-attention maps; the
answer as JSON, or as the image files themselves (Accept: application/x-xmc-images)."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from xmc_service.batcher import GeneratedImage
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
from xmc_service.routes.images import ERRORS
from xmc_service.schemas import GenerateRequest, GenerateResponse
from xmc_service.state import ServiceState

router = APIRouter(prefix="/v1", tags=["generate"])

# The binary answer: the image files back to back, their byte lengths in x-xmc-lengths and
# their seeds in x-seeds (comma-separated, in order), the format in x-xmc-format.
BINARY_TYPE = "application/x-xmc-images"


def _attention(image: GeneratedImage) -> list[dict[str, object]] | None:
    if image.attention is None:
        return None
    return [
        {"token": token, "map": word_map.round(5).tolist()}
        for token, word_map in zip(image.tokens, image.attention, strict=True)
    ]


async def generate_answer(
    body: GenerateRequest, receive: Receive, state: ServiceState, binary: bool
) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, media type) of the answer to `body` (validated)."""
    started = time.perf_counter()
    batcher = ready_batcher(state)
    check_model(body.model, batcher)
    captions = [caption for caption in body.captions for _ in range(body.n)]
    if body.seeds is not None and len(body.seeds) != len(captions):
        raise APIError(
            400,
            f"Invalid 'seeds': expected {len(captions)} (captions x n), got {len(body.seeds)}.",
            param="seeds",
            code="invalid_value",
        )
    if binary and body.return_attention:
        raise APIError(
            400,
            "Attention maps come only in the JSON answer; drop 'return_attention' or the "
            f"Accept: {BINARY_TYPE} header.",
            param="return_attention",
            code="invalid_value",
        )
    seeds = body.seeds if body.seeds is not None else random_seeds(len(captions))
    images = await generate_or_drop(
        receive, batcher, captions, seeds, body.truncation, body.return_attention
    )
    files = await encode_all(images, body.output_format)
    state.metrics.images_generated.inc(len(images))
    state.metrics.request_seconds.labels(endpoint="generate").observe(time.perf_counter() - started)
    if binary:
        headers = {
            "x-xmc-lengths": ",".join(str(len(file)) for file in files),
            "x-seeds": ",".join(str(image.seed) for image in images),
            "x-xmc-format": body.output_format,
        }
        return b"".join(files), headers, BINARY_TYPE
    outputs = []
    for caption, image, file in zip(captions, images, files, strict=True):
        output: dict[str, object] = {
            "caption": caption,
            "seed": image.seed,
            "b64_json": to_base64(file),
            "tokens": image.tokens,
        }
        if image.attention is not None:
            output["attention"] = _attention(image)
        outputs.append(output)
    answer = {
        "created": int(time.time()),
        "model": batcher.model.model_id,
        "output_format": body.output_format,
        "images": outputs,
    }
    return json.dumps(answer).encode(), {}, "application/json"


def wants_binary(accept: str) -> bool:
    return BINARY_TYPE in accept


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        **ERRORS,
        200: {
            "content": {BINARY_TYPE: {}},
            "description": f"JSON, or with Accept: {BINARY_TYPE} the image files back to back "
            "(lengths in x-xmc-lengths, seeds in x-seeds, format in x-xmc-format; media types "
            f"{', '.join(MEDIA_TYPES.values())}).",
        },
    },
)
async def generate(body: GenerateRequest, request: Request, state: StateDep) -> Response:
    """`n` images per caption; image i of caption c uses seeds[c * n + i]."""
    binary = wants_binary(request.headers.get("accept", ""))
    content, headers, media_type = await generate_answer(body, request.receive, state, binary)
    return Response(content, media_type=media_type, headers=headers)
