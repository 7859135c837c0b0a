"""Where the model runs: in a process of its own (`xmc_service.model_process.ProcessHost`, what
xmc-serve does), or on a thread of the server's process (`ThreadHost`: a pipeline handed to
`create_app`, the tests).

Both take the batcher's calls as typed methods (`generate`, `interpolate`, `warm`, `set_threads`,
`ping`) that return futures and run one at a time in order, each a method of `LocalModel`, which
holds the pipeline and its text-feature cache.

Why a process: a model thread shares the server's GIL with the event loop. Each torch operator
around the generator (a latent per seed, the text features' rows, the uint8 conversion: about a
hundred per batch) gives the GIL back and must win it again from the busy loop. Measured on 2
cores: a Python thread spinning beside the model thread halved its images/s; under 64 clients
the service served 0.80-0.85 of the in-process rate with the model on a thread, 0.93-1.00
with it in a process of its own (`python -m benchmarks.model_hosts`, three runs). That
process shares no GIL; its batches come over a pipe (a batch of 32 images of 32 px is 98 KB
back) and the next one waits in the pipe while the current one runs. Figures: docs/service.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger("xmc_service")


class Pipeline(Protocol):
    """The part of `models.XMCGANPipeline` the service uses."""

    resolution: int
    model_id: str

    def encode_text(self, captions: list[str]) -> Any: ...

    def generate(
        self, feats: Any, seeds: list[int], truncation: float = 1.0, **kwargs: Any
    ) -> Any: ...

    def interpolate(
        self, feats: Any, seeds: tuple[int, int], frames: int, truncation: float = 1.0
    ) -> Any: ...


class ModelHost(Protocol):
    """The model, wherever it runs: each call returns a future, run after those before it."""

    model_id: str
    resolution: int
    device_type: str  # "cpu" or "cuda": the batching window depends on it

    def generate(
        self, captions: list[str], seeds: list[int], truncation: float, attention: bool
    ) -> Future[Generated]: ...

    def interpolate(
        self, captions: tuple[str, str], seeds: tuple[int, int], frames: int, truncation: float
    ) -> Future[np.ndarray]: ...

    def warm(self, size: int) -> Future[None]: ...

    def set_threads(self, threads: int | None) -> Future[None]: ...

    def ping(self) -> Future[None]: ...

    def oldest_call_s(self) -> float:
        """How long the oldest unanswered call has waited (0 when none)."""
        ...

    def close(self) -> None: ...


class _TypedCalls:
    """The typed calls of `ModelHost`, each one `_submit(<LocalModel method>, *args)`."""

    def _submit(self, op: str, *args: Any) -> Future[Any]:
        raise NotImplementedError

    def generate(
        self, captions: list[str], seeds: list[int], truncation: float, attention: bool
    ) -> Future[Generated]:
        return self._submit("generate", captions, seeds, truncation, attention)

    def interpolate(
        self, captions: tuple[str, str], seeds: tuple[int, int], frames: int, truncation: float
    ) -> Future[np.ndarray]:
        return self._submit("interpolate", captions, seeds, frames, truncation)

    def warm(self, size: int) -> Future[None]:
        return self._submit("warm", size)

    def set_threads(self, threads: int | None) -> Future[None]:
        return self._submit("set_threads", threads)

    def ping(self) -> Future[None]:
        return self._submit("ping")


class ModelError(RuntimeError):
    """A call failed in the model's process; the message names the original error."""


class ModelLoadError(RuntimeError):
    """The model's process could not load the model; the message is one line naming the file."""


class ModelProcessExited(RuntimeError):
    """The model's process is gone (killed, out of memory, crashed)."""


class ModelStalled(RuntimeError):
    """The model has not answered a call within the deadline (a stopped or hung process)."""


def check_model_id(model_id: str) -> str:
    """A served model id goes into logs, /v1/models and errors: no control characters."""
    bad = [c for c in model_id if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad or not model_id.strip():
        raise ModelLoadError(
            f"the model's id {model_id!r} is empty or has control characters; "
            "set a printable model_id in its config.json"
        )
    return model_id


def set_process_name(name: str) -> None:
    """Name this process in /proc (ps, top, the HTTP-side benchmark's CPU counters)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'; 'cuda' without a GPU is an error
    (models.runtime.pick_device, the project's one device choice)."""
    from models import DeviceError, pick_device

    try:
        return str(pick_device(requested))
    except DeviceError:
        raise RuntimeError("XMC_DEVICE=cuda but no CUDA GPU is visible to torch") from None


def load_pipeline(settings: Any) -> Pipeline:
    """Load the artifact named by the settings (None: the bundled default) on its device."""
    from models import XMCGANPipeline  # the service reaches `models` only through the pipeline

    device = resolve_device(settings.device)
    where = settings.model_dir or "the bundled default artifact"
    logger.info("loading %s on %s (text encoder, generator, engine) ...", where, device)
    pipeline = XMCGANPipeline.from_pretrained(
        settings.model_dir, device=device, backend=settings.backend
    )
    if device == "cpu":
        logger.warning("no GPU in use: serving %s on the CPU (slower)", where)
    else:
        logger.info("serving %s on %s", where, device)
    return pipeline


def describe_failure(error: BaseException) -> str:
    """One line: an ArtifactError already names its file; anything else gets its type."""
    from models import ArtifactError, one_line

    if isinstance(error, ArtifactError | ModelLoadError):
        return one_line(error)
    return f"{type(error).__name__}: {one_line(error)}"


@dataclass(frozen=True)
class Generated:
    """A batch's images, as they travel back from the model."""

    pixels: np.ndarray  # (B, H, W, 3) uint8
    tokens: list[list[str]]  # each caption's tokens as the text encoder read them
    attention: list[np.ndarray] | None  # per image (len(tokens[i]), 16, 16) float32, or None
    cache_hits: int  # captions whose text features were cached
    cache_misses: int
    seconds: float  # the model's time for the batch, features to uint8


class TextFeatureCache:
    """LRU cache of one-row text features per caption, counting hits and misses."""

    def __init__(self, pipeline: Pipeline, size: int) -> None:
        self._pipeline = pipeline
        self._size = size
        self._rows: OrderedDict[str, Any] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def features(self, captions: list[str]) -> Any:
        """Text features for `captions` (one row each, in order), encoding only unseen ones."""
        rows: dict[str, Any] = {}
        for caption in dict.fromkeys(captions):
            if caption in self._rows:
                self._rows.move_to_end(caption)
                rows[caption] = self._rows[caption]
        missing = [caption for caption in dict.fromkeys(captions) if caption not in rows]
        if missing:
            encoded = self._pipeline.encode_text(missing)
            for index, caption in enumerate(missing):
                rows[caption] = encoded.select([index])
                self._remember(caption, rows[caption])
        hits = sum(caption not in missing for caption in captions)
        self.hits, self.misses = self.hits + hits, self.misses + len(captions) - hits
        first = rows[captions[0]]
        return type(first).cat([rows[caption] for caption in captions])

    def _remember(self, caption: str, row: Any) -> None:
        if self._size <= 0:
            return
        self._rows[caption] = row
        while len(self._rows) > self._size:
            self._rows.popitem(last=False)


def to_pixels(images: Any) -> np.ndarray:
    """(B, 3, H, W) torch floats in [0, 1] -> (B, H, W, 3) uint8 (models.to_uint8, the
    project's one float -> uint8 rounding, then channels last)."""
    return _to_uint8()(images).cpu().permute(0, 2, 3, 1).contiguous().numpy()


@functools.cache
def _to_uint8() -> Callable[[Any], Any]:
    """models.to_uint8, looked up once: `models` resolves its names lazily, about 50 us a call
    (a tenth of the model process's time per batch with a stand-in model)."""
    from models import to_uint8

    return to_uint8


def warmup_sizes(max_batch_images: int) -> list[int]:
    """1, 2, 4, ... up to max_batch_images, and max_batch_images itself."""
    sizes = {max_batch_images}
    size = 1
    while size < max_batch_images:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


class LocalModel:
    """The pipeline and its text-feature cache, in the process and on the thread that run
    them; every method is one call the batcher makes."""

    def __init__(self, pipeline: Pipeline, text_cache_size: int) -> None:
        self.pipeline = pipeline
        self.cache = TextFeatureCache(pipeline, text_cache_size)
        self.model_id, self.resolution = check_model_id(pipeline.model_id), pipeline.resolution
        device = getattr(pipeline, "device", None)
        self.device_type = str(getattr(device, "type", device or "cpu"))

    def ping(self) -> None:
        """Nothing: answered in order after the calls before it, it shows the model is alive."""

    def default_threads(self) -> int | None:
        """On the CPU, one model thread per core but one, which the HTTP side keeps: on 2
        cores two model threads spin against the event loop (measured 2.5x slower per forward
        under load, docs/service.md). None (torch's default) on a GPU."""
        device = getattr(self.pipeline, "device", None)
        if device is None or getattr(device, "type", str(device)) != "cpu":
            return None
        return max(1, (os.cpu_count() or 1) - 1)

    def set_threads(self, threads: int | None) -> None:
        """The model's intra-op CPU threads (None: the default above); OpenMP counts them per
        thread, so this runs on the model's own thread."""
        import torch

        threads = threads or self.default_threads()
        if threads is not None:
            torch.set_num_threads(threads)

    def warm(self, size: int) -> None:
        """One forward at batch `size`: its first call builds the kernels for that size."""
        import torch

        feats = self.pipeline.encode_text(["warm-up"] * size)
        with torch.inference_mode():
            self.pipeline.generate(feats, list(range(size)))

    def generate(
        self, captions: list[str], seeds: list[int], truncation: float, attention: bool
    ) -> Generated:
        import torch

        started, hits, misses = time.perf_counter(), self.cache.hits, self.cache.misses
        feats = self.cache.features(captions)
        maps: list[np.ndarray] | None = None
        with torch.inference_mode():
            if attention:
                images, attn = self.pipeline.generate(
                    feats, seeds, truncation=truncation, return_attention=True
                )
                grids = attn.detach().float().cpu().numpy()  # (B, T, 16, 16)
                maps = [grids[row, : len(tokens)] for row, tokens in enumerate(feats.tokens)]
            else:
                images = self.pipeline.generate(feats, seeds, truncation=truncation)
        return Generated(
            to_pixels(images),
            [list(tokens) for tokens in feats.tokens],
            maps,
            self.cache.hits - hits,
            self.cache.misses - misses,
            time.perf_counter() - started,
        )

    def interpolate(
        self, captions: tuple[str, str], seeds: tuple[int, int], frames: int, truncation: float
    ) -> np.ndarray:
        """(frames, H, W, 3) uint8 walking between the two captions and seeds."""
        import torch

        feats = self.cache.features(list(captions))
        with torch.inference_mode():
            return to_pixels(self.pipeline.interpolate(feats, seeds, frames, truncation))


class ThreadHost(_TypedCalls):
    """The model on one thread of this process."""

    def __init__(self, model: LocalModel) -> None:
        self._model = model
        self.model_id, self.resolution = model.model_id, model.resolution
        self.device_type = model.device_type
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="xmc-model")
        self._submitted: deque[tuple[float, Future[Any]]] = deque()

    @classmethod
    def around(cls, pipeline: Pipeline, text_cache_size: int) -> ThreadHost:
        return cls(LocalModel(pipeline, text_cache_size))

    def _submit(self, op: str, *args: Any) -> Future[Any]:
        future = self._executor.submit(getattr(self._model, op), *args)
        self._submitted.append((time.monotonic(), future))
        return future

    def oldest_call_s(self) -> float:
        while self._submitted and self._submitted[0][1].done():
            self._submitted.popleft()
        return time.monotonic() - self._submitted[0][0] if self._submitted else 0.0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
