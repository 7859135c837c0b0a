"""The XMC-GAN generator (paper Sec. 4.2, Fig. 3; official `nets/xmc_net.py`).

z -> 4x4 stem -> GenBlocks conditioned on g = [W e_s, z] up to 16x16 -> word attention over the
16x16 regions -> m = [context, g] conditions the remaining GenSpatialBlocks through local
conditional BN -> CBN-ReLU-conv3x3-tanh, mapped to [0, 1]. No spectral norm in G (official).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.artifacts import ArtifactMixin
from models.config import GeneratorConfig, get_preset
from models.layers import GenBlock, LocalConditionalBatchNorm, init_glorot, l2_normalize


def word_attention(
    regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, rho0: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attend from every region to the words (official `attention_for_g`).

    regions (B, N, D), words (B, T, D), word_mask (B, T) bool (True = valid).
    Returns context (B, N, D), a mix of L2-normalised words, and attention (B, N, T).
    """
    regions, words = l2_normalize(regions.float()), l2_normalize(words.float())
    logits = rho0 * regions @ words.transpose(1, 2)  # (B, N, T), rho0 * cosine
    logits = logits.masked_fill(~word_mask[:, None, :], float("-inf"))
    attention = logits.softmax(dim=-1)
    return attention @ words, attention


class GeneratorOutput(NamedTuple):
    """What `Generator(..., return_attention=True)` returns (a tuple, so it also unpacks)."""

    images: torch.Tensor  # (B, 3, R, R) in [0, 1]
    attention: torch.Tensor  # (B, T, 16, 16): each region's distribution over the words


class Generator(nn.Module, ArtifactMixin):
    config_class = GeneratorConfig
    artifact_kind = "generator"

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = c = config
        channels = [c.gf_dim * m for m in c.channel_multipliers]
        global_dim = 2 * c.z_dim  # g = [W e_s (z_dim), z]
        spatial_dim = c.word_dim + global_dim  # m = [context, g]
        bn = {"momentum": c.bn_momentum, "eps": c.bn_eps}

        self.sentence_projection = nn.Linear(c.sentence_dim, c.z_dim)
        self.stem = nn.Linear(c.z_dim, channels[0] * 4 * 4)
        in_channels = [channels[0]] + channels[:-1]
        n_global = c.num_global_blocks
        self.global_blocks = nn.ModuleList(
            GenBlock(i, o, global_dim, local=False, **bn)
            for i, o in zip(in_channels[:n_global], channels[:n_global], strict=True)
        )
        self.word_projection = nn.Conv2d(channels[n_global - 1], c.word_dim, 1)
        self.spatial_blocks = nn.ModuleList(
            GenBlock(i, o, spatial_dim, local=True, **bn)
            for i, o in zip(in_channels[n_global:], channels[n_global:], strict=True)
        )
        self.head_norm = LocalConditionalBatchNorm(channels[-1], spatial_dim, **bn)
        self.head_conv = nn.Conv2d(channels[-1], 3, 3, padding=1)
        init_glorot(self)

    @classmethod
    def from_preset(cls, name: str) -> Generator:
        return cls(get_preset(name).generator)

    def forward(
        self,
        z: torch.Tensor,
        sentence: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> torch.Tensor | GeneratorOutput:
        """z (B, Z), sentence (B, D_s), words (B, T, D_w), word_mask (B, T) bool.

        Returns images (B, 3, R, R) in [0, 1]; with return_attention a GeneratorOutput that
        adds the word attention (B, T, 16, 16) (each region's distribution over words).
        """
        c = self.config
        batch = z.shape[0]
        if (
            z.shape != (batch, c.z_dim)
            or sentence.shape != (batch, c.sentence_dim)
            or words.dim() != 3
            or words.shape[::2] != (batch, c.word_dim)
            or word_mask.shape != words.shape[:2]
        ):
            raise ValueError(
                f"expected z ({batch}, {c.z_dim}), sentence ({batch}, {c.sentence_dim}), words "
                f"({batch}, T, {c.word_dim}) and word_mask ({batch}, T); got "
                f"{tuple(z.shape)}, {tuple(sentence.shape)}, {tuple(words.shape)}, "
                f"{tuple(word_mask.shape)}"
            )
        if not torch.compiler.is_compiling() and not bool(word_mask.any(dim=1).all()):
            raise ValueError("every caption needs at least one valid token in word_mask")
        g = torch.cat([self.sentence_projection(sentence), z], dim=1)  # (B, 2Z)
        x = self.stem(z).view(batch, -1, 4, 4)
        for block in self.global_blocks:
            x = block(x, g)  # -> (B, C, 16, 16)
        side = c.attention_resolution
        regions = self.word_projection(x).flatten(2).transpose(1, 2)  # (B, 256, D_w)
        context, attention = word_attention(regions, words, word_mask, c.rho0)
        context = context.to(x.dtype).transpose(1, 2).reshape(batch, c.word_dim, side, side)
        # m = [context, g] (B, D_w + 2Z, 16, 16); the local norms upsample it (nearest) to
        # each block's size, as the official code does before every GenSpatialBlock
        m = torch.cat([context, g[:, :, None, None].expand(-1, -1, side, side)], dim=1)
        for block in self.spatial_blocks:
            x = block(x, m)
        x = self.head_conv(F.relu(self.head_norm(x, m)))
        images = (torch.tanh(x) + 1.0) / 2.0
        if return_attention:
            return GeneratorOutput(images, attention.transpose(1, 2).reshape(batch, -1, side, side))
        return images
