"""Optional pretrained CNN for the image-image contrastive loss L_img (paper Sec. 4.1).

The paper names VGG; the official code uses ResNet-50's 1000-d logits on [0, 1] images,
resized to 224 x 224 first (bilinear, `pretrained_model_utils.get_pretrained_embs`). This
wraps transformers' `ResNetForImageClassification` loaded from a local directory (no download);
the trainer leaves the loss out when no weights are given.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESNET_IMAGE_SIZE = 224  # official pretrained_model_utils.RESNET_IMG_SIZE


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
        """images (B, 3, H, W) in [0, 1] -> logits (B, num_labels)."""
        if images.shape[-2:] != (RESNET_IMAGE_SIZE, RESNET_IMAGE_SIZE):
            # jax.image.resize "bilinear": half-pixel centres, antialiased when shrinking
            images = F.interpolate(
                images,
                size=(RESNET_IMAGE_SIZE, RESNET_IMAGE_SIZE),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )  # (B, 3, 224, 224)
        # the official code feeds [0, 1] images, unnormalised
        return self.resnet(pixel_values=images).logits.float()
