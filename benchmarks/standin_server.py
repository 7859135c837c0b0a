"""`xmc-serve` with a stand-in model, for measuring the HTTP side alone (benchmarks and tests).

    XMC_STANDIN_RESOLUTION=32 XMC_STANDIN_BATCH_MS=0 python benchmarks/standin_server.py ARGS

runs the real service (routes, batcher, model host, encoding; ARGS as for `xmc-serve`) with a
model that returns precomputed pixels at once, after sleeping XMC_STANDIN_BATCH_MS per batch
to stand in for a GPU. Never a user-facing backend: it exists only as this script.

It is self-contained, run by its path, so the same file serves this tree and a `git archive` of
an older one (PYTHONPATH picks the tree): the service spawns its model process with the
"spawn" start method, which runs this file's top level again in the child (as `__mp_main__`),
so the patch below reaches the process that loads the model, in either tree.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from models.text_encoder import TextFeatures

RESOLUTION = int(os.environ.get("XMC_STANDIN_RESOLUTION", "32"))
BATCH_MS = float(os.environ.get("XMC_STANDIN_BATCH_MS", "0"))
MAX_BATCH = 1024


def _pixels(count: int, resolution: int) -> torch.Tensor:
    """(count, 3, R, R) uint8: smooth colour fields with a little noise, which compress about
    as a generated image does (pure noise would make PNG encoding look dearer than it is)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (count, 3, 4, 4)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(resolution, resolution), mode="bilinear"
    )  # (count, 3, R, R)
    noise = torch.from_numpy(rng.normal(0, 6, smooth.shape).astype(np.float32))
    return (smooth + noise).clamp(0, 255).to(torch.uint8)


class StandInPipeline:
    """The pipeline's interface, answering with precomputed uint8 pixels (`models.to_uint8`
    passes uint8 through), so what is measured is everything around the model."""

    def __init__(self, resolution: int = RESOLUTION, batch_ms: float = BATCH_MS) -> None:
        self.resolution = resolution
        self.model_id = f"stand-in-{resolution}px"
        self.batch_ms = batch_ms
        self._images = _pixels(64, resolution)

    def encode_text(self, captions: list[str]) -> TextFeatures:
        sentence = torch.zeros(len(captions), 1)  # (B, 1)
        words = torch.zeros(len(captions), 1, 1)  # (B, 1, 1)
        mask = torch.ones(len(captions), 1, dtype=torch.bool)  # (B, 1)
        return TextFeatures(words, mask, sentence, [["[CLS]"] for _ in captions])

    def generate(self, feats, seeds, truncation: float = 1.0, **kwargs):  # noqa: ANN001
        if self.batch_ms:
            time.sleep(self.batch_ms / 1000)
        count = len(self._images)  # a tensor's len() is a Python call: once, not per seed
        rows = [int(seed) % count for seed in seeds]
        images = self._images[rows]  # (B, 3, R, R) uint8
        if kwargs.get("return_attention"):
            return images, torch.full((len(seeds), 1, 16, 16), 1 / 256)
        return images

    def interpolate(self, feats, seeds, frames: int, truncation: float = 1.0):  # noqa: ANN001
        return self._images[torch.arange(frames) % len(self._images)]


def load_stand_in(settings: object = None) -> StandInPipeline:
    return StandInPipeline()


def _patch() -> None:
    """Both trees look the loader up at call time in the model's process."""
    import importlib

    for module_name in ("xmc_service.model_host", "xmc_service.state"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "load_pipeline"):
            module.__dict__["load_pipeline"] = load_stand_in  # either tree's loader, by name
            return


if __name__ in ("__main__", "__mp_main__"):  # this script, or a process it spawned
    _patch()

if __name__ == "__main__":
    from xmc_service.cli import main

    raise SystemExit(main())
