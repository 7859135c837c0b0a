"""Prometheus metrics, one registry per app so several apps (tests) never share counters.

With several HTTP workers (xmc_service.engine) every process writes its metrics to files in
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, chosen when it is imported),
and /metrics in any worker answers their sum over all workers and the engine: the engine's
queue depth and batch figures, every worker's requests and rejections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    queue_images: Gauge
    queue_seconds: Histogram
    inference_seconds: Histogram
    request_seconds: Histogram
    batch_images: Histogram
    rejections: Counter
    images_generated: Counter
    text_cache: Counter

    @property
    def scrape(self) -> CollectorRegistry:
        """What /metrics answers: this registry, or every process's metrics summed."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        from prometheus_client import multiprocess

        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)
        return summed


def make_metrics() -> Metrics:
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        queue_images=Gauge(
            "xmc_queue_images",
            "Images waiting for the model.",
            registry=registry,
            multiprocess_mode="livemax",  # the engine's figure; the workers hold none
        ),
        queue_seconds=Histogram(
            "xmc_queue_seconds",
            "Time an image waits before its batch starts.",
            buckets=_SECONDS,
            registry=registry,
        ),
        inference_seconds=Histogram(
            "xmc_inference_seconds",
            "Model time per batch (text encoding and generation).",
            buckets=_SECONDS,
            registry=registry,
        ),
        request_seconds=Histogram(
            "xmc_request_seconds",
            "Total time of a generation request, queue included.",
            ["endpoint"],
            buckets=_SECONDS,
            registry=registry,
        ),
        batch_images=Histogram(
            "xmc_batch_images",
            "Images per batch sent to the model.",
            buckets=_BATCH_SIZES,
            registry=registry,
        ),
        rejections=Counter(
            "xmc_rejections", "Requests refused, by reason.", ["reason"], registry=registry
        ),
        images_generated=Counter(
            "xmc_images_generated", "Images generated and returned.", registry=registry
        ),
        text_cache=Counter(
            "xmc_text_cache", "Text-feature cache look-ups.", ["result"], registry=registry
        ),
    )


def count_rejection(app: Any, reason: str) -> None:
    """Count a refused request on the app's metrics (none yet while the service starts)."""
    service = getattr(getattr(app, "state", None), "service", None)
    if service is not None:
        service.metrics.rejections.labels(reason=reason).inc()
