"""Service settings: command-line flags override environment variables (`XMC_*`), which
override the defaults."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The longest caption accepted, in characters. The text encoder reads only its first 17 tokens
# (the pipeline truncates), so this bound exists to keep request bodies and logs small.
MAX_CAPTION_CHARS = 1000
# The most images one request may ask for (OpenAI allows n in 1..10 for the Images API).
MAX_IMAGES_PER_CAPTION = 10
# The most captions one native /v1/generate request may carry.
MAX_CAPTIONS_PER_REQUEST = 16


class Settings(BaseSettings):
    """Everything the service reads from its environment, each with the `XMC_` prefix."""

    model_config = SettingsConfigDict(
        env_prefix="XMC_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    model_dir: str | None = None
    """Artifact folder (config.json + *.safetensors); None serves the bundled default artifact."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs: auto picks CUDA when a GPU is present, else the CPU."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch_images: int = Field(32, ge=1, le=1024)
    """A batch is sent to the model as soon as it holds this many images..."""
    max_wait_ms: float = Field(5.0, ge=0.0, le=10_000.0)
    """...or once it has gathered this long (from when its oldest image and the model were both
    there), whichever comes first."""
    max_queue_images: int = Field(512, ge=1)
    """Images waiting for the model; a request that would overflow it is answered 429."""
    api_keys: Annotated[list[str], NoDecode] = []
    """Bearer keys (comma-separated in the environment); empty means no authentication."""
    cors_origins: Annotated[list[str], NoDecode] = []
    """Origins allowed by CORS (comma-separated); empty means no CORS headers."""
    text_cache_size: int = Field(4096, ge=0)
    """Captions whose encoded text features are kept (least recently used are dropped)."""
    max_body_bytes: int = Field(65_536, ge=1024)
    """Larger request bodies are refused with 413 before they are parsed."""
    image_ttl_s: float = Field(600.0, gt=0)
    """How long an image served with response_format=url stays downloadable."""
    image_store_size: int = Field(2048, ge=1)
    """The most images kept for url responses; the oldest go first."""
    torch_threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads for the model's operations; None keeps torch's default (one per core). Where
    the cores are shared (with the HTTP side, or other processes), fewer can be much faster."""
    warmup: bool = True
    """Run warm-up forwards (batch 1, 2, 4, ... and the full batch) before /health/ready is 200."""

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
