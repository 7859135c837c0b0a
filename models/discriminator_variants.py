"""Discriminator variants that are not in the paper (DiscriminatorConfig.coords, .sentence_head;
set from experiments.d_coords / d_sentence_head by `training/experiments`).

- coords (CoordConv, Liu et al. 2018): x and y coordinate channels in [-1, 1] joined to the
  image before the stem and to the 16x16 region map before its projection, so that phi(x) and
  the regions can say where things are ("a circle left of a square"); the paper's D is
  translation-equivariant up to its padding.
- sentence_head: V e_s as an SN MLP with a linear shortcut (hidden width D_s) instead of the
  paper's SN linear map, so cos(phi(x), V e_s) can read what is not linear in e_s, such as which
  way round a relation is (`python -m benchmarks.relation_text_probe`).

Each function returns the paper's choice when its variant is off.
"""

from __future__ import annotations

import torch
from torch import nn

from models.config import DiscriminatorConfig
from models.layers import ProjectionHead, with_coordinates

__all__ = ["coordinate_channels", "located", "sentence_mlp"]


def coordinate_channels(config: DiscriminatorConfig) -> int:
    """Channels `located` adds: 2 with coords, 0 in the paper's D."""
    return 2 if config.coords else 0


def located(x: torch.Tensor, config: DiscriminatorConfig) -> torch.Tensor:
    """(B, C, H, W) -> (B, C + coordinate_channels, H, W)."""
    return with_coordinates(x) if config.coords else x


def sentence_mlp(config: DiscriminatorConfig) -> nn.Module | None:
    """D's V as an MLP of e_s with sentence_head; None for the paper's SN linear map."""
    if not config.sentence_head:
        return None
    return ProjectionHead(config.sentence_dim, config.feature_dim, local=False)
