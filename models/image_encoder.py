"""Optional pretrained CNN for the image-image contrastive loss L_img (paper Sec. 4.1).

The paper names VGG; the official code uses ResNet-50's 1000-d logits on [0, 1] images. This
wraps transformers' `ResNetForImageClassification` loaded from a local directory (no download);
the trainer leaves the loss out when no weights are given.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class PretrainedImageEncoder(nn.Module):
    """Frozen ResNet: images (B, 3, H, W) in [0, 1] -> logits (B, num_labels)."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.resnet = resnet.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> PretrainedImageEncoder:
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"{path} is not a directory; pass a local transformers "
                "ResNet checkpoint (e.g. microsoft/resnet-50 downloaded "
                "with `hf download`)"
            )
        from transformers import ResNetForImageClassification

        return cls(ResNetForImageClassification.from_pretrained(str(path)))

    def train(self, mode: bool = True) -> PretrainedImageEncoder:
        super().train(mode)
        self.resnet.eval()  # frozen: BN keeps its ImageNet statistics
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # the official code feeds [0, 1] images as they are
        return self.resnet(pixel_values=images).logits.float()
