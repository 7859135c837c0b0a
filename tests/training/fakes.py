"""Small stand-ins shared by the training tests."""

from __future__ import annotations

import torch
from torch import nn

SIZE = 32


class TinyFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 16): a fixed random projection of 4x4 average colours."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.projection = nn.Linear(48, 16)
        nn.init.normal_(self.projection.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.float() / 255, 4)  # (B, 3, 4, 4)
        return self.projection(pooled.flatten(1))


def image_set(seed: int, count: int = 64, shift: float = 0.0) -> torch.Tensor:
    images = torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return ((images * 0.6 + shift).clamp(0, 1) * 255).round().to(torch.uint8)
