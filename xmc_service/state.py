"""What the app holds while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from xmc_service.batcher import Batcher
from xmc_service.imaging import ImageStore, SharedImageStore
from xmc_service.metrics import Metrics
from xmc_service.settings import Settings

Status = Literal["loading", "ready", "stalled", "failed"]


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    images: ImageStore | SharedImageStore
    status: Status = "loading"
    error: str | None = None
    # The model's batcher: a local `Batcher`, or in an HTTP worker of several the
    # `xmc_service.engine.RemoteBatcher` that stands for the one batcher they share.
    batcher: Batcher | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    on_failure: Callable[[], None] | None = None  # xmc-serve: stop the server (exit code 1)
    reload: Callable[[], None] = lambda: None  # the lifecycle's: load the model again
    stopped_while_serving: bool = False  # the failure came after ready (not a load failure)
