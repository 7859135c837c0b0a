"""Request and response bodies: OpenAI's Images API shape plus the native /v1/generate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from xmc_service.settings import (
    MAX_CAPTION_CHARS,
    MAX_CAPTIONS_PER_REQUEST,
    MAX_IMAGES_PER_CAPTION,
)

MAX_SEED = 2**63 - 1


def _not_blank(caption: str) -> str:
    if not caption.strip():
        raise ValueError("the caption is empty")
    return caption


Caption = Annotated[
    str,
    Field(min_length=1, max_length=MAX_CAPTION_CHARS, description="What to draw."),
    AfterValidator(_not_blank),
]
# Strict: JSON true, "2" or 2.0 are refused, never coerced into a count or a seed.
Seed = Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]
Count = Annotated[StrictInt, Field(ge=1, le=MAX_IMAGES_PER_CAPTION)]
Truncation = Annotated[
    float,
    Field(
        strict=True,  # a JSON number (1 or 0.7), never true or "0.7"
        gt=0.0,
        le=1.0,
        description="Latent truncation in (0, 1]: 1.0 samples the prior, smaller trades variety "
        "for fidelity.",
    ),
]
OutputFormat = Literal["png", "jpeg", "webp"]


class ImageGenerationRequest(BaseModel):
    """OpenAI `POST /v1/images/generations`; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: Caption
    model: str | None = Field(None, description="Must name the served model when given.")
    n: Count | None = 1
    size: str | None = Field("auto", description="'auto' or the model's native size, e.g. '64x64'.")
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    output_format: OutputFormat | None = "png"
    user: str | None = Field(None, max_length=256)
    stream: StrictBool | None = Field(
        None, description="Streaming is not supported; false or absent."
    )
    seed: Seed | None = Field(None, description="Extension: image i uses seed + i.")
    truncation: Truncation = 1.0


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str
    seed: int


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


class GenerateRequest(BaseModel):
    """Native: several captions at once, per-image seeds, optional word-attention maps."""

    model_config = ConfigDict(extra="forbid")

    captions: list[Caption] = Field(min_length=1, max_length=MAX_CAPTIONS_PER_REQUEST)
    n: Count = Field(1, description="Images per caption.")
    seeds: list[Seed] | None = Field(
        None,
        description="One seed per image, caption-major (len = captions x n); random if absent.",
    )
    truncation: Truncation = 1.0
    output_format: OutputFormat = "png"
    return_attention: StrictBool = Field(False, description="Add each word's 16x16 attention map.")
    model: str | None = None


MAX_FRAMES = 48


class InterpolationRequest(BaseModel):
    """Native: walk from one caption and seed to another in `frames` images, as one animation."""

    model_config = ConfigDict(extra="forbid")

    captions: list[Caption] = Field(
        min_length=1,
        max_length=2,
        description="[from, to]; one caption keeps it and walks the seed alone.",
    )
    seeds: list[Seed] | None = Field(
        None,
        min_length=1,
        max_length=2,
        description="[from, to]; one seed keeps it and walks the caption alone; two random seeds "
        "if absent.",
    )
    frames: Annotated[StrictInt, Field(ge=2, le=MAX_FRAMES)] = 16
    frame_ms: Annotated[StrictInt, Field(ge=20, le=5000)] = Field(
        100, description="How long each frame shows."
    )
    truncation: Truncation = 1.0
    output_format: Literal["webp", "gif"] = Field(
        "webp", description="Animated WebP (lossless) or GIF (256 colours)."
    )
    model: str | None = None


class WordAttention(BaseModel):
    token: str
    map: list[list[float]] = Field(description="16x16 weights; over all tokens they sum to 1.")


class GeneratedImageOut(BaseModel):
    caption: str
    seed: int
    b64_json: str
    tokens: list[str]
    attention: list[WordAttention] | None = None


class GenerateResponse(BaseModel):
    created: int
    model: str
    output_format: OutputFormat
    images: list[GeneratedImageOut]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "xmc"
    resolution: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
