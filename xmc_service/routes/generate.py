"""Native generation: several captions per request, per-image seeds, word-attention maps."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from xmc_service.batcher import GeneratedImage
from xmc_service.deps import BatcherDep, StateDep, require_api_key
from xmc_service.errors import APIError
from xmc_service.imaging import to_base64
from xmc_service.routes._generation import (
    check_model,
    encode_all,
    generate_or_drop,
    random_seeds,
)
from xmc_service.routes.images import ERRORS
from xmc_service.schemas import (
    GeneratedImageOut,
    GenerateRequest,
    GenerateResponse,
    WordAttention,
)

router = APIRouter(prefix="/v1", tags=["generate"])


def _attention(image: GeneratedImage) -> list[WordAttention] | None:
    if image.attention is None:
        return None
    return [
        WordAttention(token=token, map=word_map.round(5).tolist())
        for token, word_map in zip(image.tokens, image.attention, strict=True)
    ]


@router.post(
    "/generate",
    response_model=GenerateResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    dependencies=[Depends(require_api_key)],
)
async def generate(
    body: GenerateRequest, request: Request, batcher: BatcherDep, state: StateDep
) -> GenerateResponse:
    """`n` images per caption; image i of caption c uses seeds[c * n + i]."""
    started = time.perf_counter()
    check_model(body.model, batcher)
    captions = [caption for caption in body.captions for _ in range(body.n)]
    if body.seeds is not None and len(body.seeds) != len(captions):
        raise APIError(
            400,
            f"Invalid 'seeds': expected {len(captions)} (captions x n), got {len(body.seeds)}.",
            param="seeds",
            code="invalid_value",
        )
    seeds = body.seeds if body.seeds is not None else random_seeds(len(captions))
    images = await generate_or_drop(
        request, batcher, captions, seeds, body.truncation, body.return_attention
    )
    files = await encode_all(images, body.output_format)
    outputs = [
        GeneratedImageOut(
            caption=caption,
            seed=image.seed,
            b64_json=to_base64(file),
            tokens=image.tokens,
            attention=_attention(image),
        )
        for caption, image, file in zip(captions, images, files, strict=True)
    ]
    state.metrics.images_generated.inc(len(images))
    state.metrics.request_seconds.labels(endpoint="generate").observe(time.perf_counter() - started)
    return GenerateResponse(
        created=int(time.time()),
        model=batcher.model.model_id,
        output_format=body.output_format,
        images=outputs,
    )
