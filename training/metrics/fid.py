"""Feature-space distances between image sets: FID and KID (through torchmetrics).

Both take any feature network (`training.metrics.inception.FIDInceptionV3` for numbers that
compare with papers, a tiny random network in tests).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from models.images import to_uint8

if TYPE_CHECKING:
    from torchmetrics import Metric


class MetricInputError(ValueError):
    """Too few images, or images of the wrong kind, for a metric."""


def _device(feature: nn.Module) -> torch.device:
    parameter = next(feature.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _update(
    metric: Metric, images: torch.Tensor, real: bool, batch_size: int, device: torch.device
) -> None:
    for batch in to_uint8(images).split(batch_size):
        metric.update(batch.to(device), real=real)


def frechet_distance(
    real: torch.Tensor, fake: torch.Tensor, feature: nn.Module, batch_size: int = 50
) -> float:
    """FID between two image sets, (N, 3, H, W) each, with `feature` (uint8 -> (N, D))."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if min(len(real), len(fake)) < 2:
        raise MetricInputError(
            f"FID needs at least 2 images per set, got {len(real)} and {len(fake)}"
        )
    device = _device(feature)
    metric = FrechetInceptionDistance(feature=feature, normalize=False).to(device)
    with torch.no_grad():
        _update(metric, real, True, batch_size, device)
        _update(metric, fake, False, batch_size, device)
        return float(metric.compute())


def kernel_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    feature: nn.Module,
    batch_size: int = 50,
    subsets: int = 100,
    subset_size: int = 1000,
) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets) between two image sets."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise MetricInputError(
            f"KID needs at least 2 images per set, got {len(real)} and {len(fake)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the subsets are drawn with torch's global RNG
        device = _device(feature)
        with warnings.catch_warnings():  # "will save all extracted features": as intended
            warnings.simplefilter("ignore", UserWarning)
            metric = KernelInceptionDistance(
                feature=feature, normalize=False, subsets=subsets, subset_size=size
            ).to(device)
        with torch.no_grad():
            _update(metric, real, True, batch_size, device)
            _update(metric, fake, False, batch_size, device)
            mean, std = metric.compute()
    return float(mean), float(std)
