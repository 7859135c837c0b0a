"""What the app holds while it runs, and how the model gets loaded (in the lifespan)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from xmc_service.batcher import Batcher
from xmc_service.imaging import ImageStore
from xmc_service.metrics import Metrics
from xmc_service.settings import Settings
from xmc_service.worker import Pipeline

logger = logging.getLogger("xmc_service")


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    images: ImageStore
    status: Literal["loading", "ready", "failed"] = "loading"
    error: str | None = None
    batcher: Batcher | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    on_failure: Callable[[], None] | None = None  # xmc-serve: stop the server (exit code 1)
    reload: Callable[[], None] = lambda: None  # the lifespan's: load the model again


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'; 'cuda' without a GPU is an error
    (models.runtime.pick_device, the project's one device choice)."""
    from models import DeviceError, pick_device

    try:
        return str(pick_device(requested))
    except DeviceError:
        raise RuntimeError("XMC_DEVICE=cuda but no CUDA GPU is visible to torch") from None


def load_pipeline(settings: Settings) -> Pipeline:
    """Load the artifact named by the settings (None: the bundled default) on its device."""
    from models import XMCGANPipeline  # the service reaches `models` only through the pipeline

    device = resolve_device(settings.device)
    pipeline = XMCGANPipeline.from_pretrained(
        settings.model_dir, device=device, backend=settings.backend
    )
    where = settings.model_dir or "the bundled default artifact"
    if device == "cpu":
        logger.warning("no GPU in use: serving %s on the CPU (slower)", where)
    else:
        logger.info("serving %s on %s", where, device)
    return pipeline
