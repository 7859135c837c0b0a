"""FID or KID of a pipeline's images against a split's real ones (`xmc-eval fid|kid`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.metrics import fid as metrics
from training.metrics.sampling import generate, load_split, pick_captions, real_images

__all__ = ["feature_metric"]


def feature_metric(
    pipeline: Any,
    data_root: str | Path,
    split: str,
    feature: torch.nn.Module,
    metric: str = "fid",
    num: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
    return_images: bool = False,
) -> dict[str, Any]:
    """FID or KID of N generated images against the split's real images."""
    records = load_split(data_root, split, num)
    real = real_images(records, pipeline.resolution)
    fake = generate(pipeline, pick_captions(records, seed), seed, batch_size, progress)
    result: dict[str, Any] = {
        "model_id": pipeline.model_id,
        "split": split,
        "seed": seed,
        "resolution": pipeline.resolution,
        "num_images": len(records),
    }
    if metric == "fid":
        result["fid"] = metrics.frechet_distance(real, fake, feature)
    else:
        result["kid_mean"], result["kid_std"] = metrics.kernel_distance(real, fake, feature)
    if return_images:
        result["images"] = {"real": real, "generated": fake}
    return result
