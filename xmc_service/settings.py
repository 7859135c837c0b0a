"""Service settings: command-line flags override environment variables (`XMC_*`), which
override the defaults."""

from __future__ import annotations

import os
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
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    """The generator's engine: auto runs it on ONNX Runtime on the CPU (exported at start-up,
    about a second) and on PyTorch on a GPU; word-attention maps always come from PyTorch."""
    model_process: bool = True
    """Run the model in a process of its own, which shares no GIL with the HTTP side; False runs
    it on a thread of the server's process (docs/service.md has the figures)."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch_images: int = Field(32, ge=1, le=1024)
    """A batch is sent to the model as soon as it holds this many images..."""
    max_wait_ms: float | None = Field(None, ge=0.0, le=10_000.0)
    """...or once it has gathered this long (from when its oldest image and the model were both
    there), whichever comes first. None: 5 ms on the CPU (a forward takes tens of ms), 1 ms on
    a GPU (a whole batch takes ~3 ms there)."""
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
    """CPU threads for the model's operations; None: on the CPU one per core but one (left to the
    HTTP side), on a GPU torch's default."""
    warmup: bool = True
    """Run warm-up forwards (batch 1, 2, 4, ... and the full batch) before /health/ready is 200."""
    public_url: str | None = None
    """The base URL clients reach this server at (e.g. https://images.example.com), for
    response_format=url answers; None answers a path (/v1/images/files/...). Never taken from
    the request's Host header, which the client controls."""
    max_connections: int = Field(1024, ge=1, le=65_536)
    """Open connections per HTTP worker beyond which a new connection is answered 429 with
    Retry-After and closed at once. Idle connections are closed after idle_timeout_s, so they
    cannot hold this up."""
    idle_timeout_s: float = Field(5.0, gt=0, le=3600)
    """A connection that has not sent a whole request head this long after it opened or after
    its last answer (idle, or sending slowly) is closed; a request body must arrive within it
    too (else 408)."""
    workers: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1, le=256)
    """HTTP worker processes in front of the one model process (which batches across all of
    them); default: one per core this process may run on. 1 serves from one process (the
    batcher beside the HTTP side); a container's CPU limit is not seen here: set it."""
    model_timeout_s: float = Field(30.0, gt=0, le=3600)
    """A model call unanswered this long (a stopped or hung model process) makes the service
    not ready and answers the requests waiting for it 503, until the model answers again."""
    keep_retrying: bool = False
    """When the model cannot be loaded: False stops xmc-serve with exit code 1 (an orchestrator
    sees it); True keeps it up, /health/ready 503, retrying every retry_s seconds."""
    retry_s: float = Field(10.0, gt=0, le=3600)
    """Seconds between load attempts with keep_retrying."""

    def batch_wait_ms(self, device_type: str) -> float:
        """max_wait_ms, or its default for the device the model runs on."""
        if self.max_wait_ms is not None:
            return self.max_wait_ms
        return 5.0 if device_type == "cpu" else 1.0

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or any(c in value for c in " ?#"):
            raise ValueError("must be an http:// or https:// base URL without query or fragment")
        return value.rstrip("/")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
