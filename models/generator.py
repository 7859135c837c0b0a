"""The XMC-GAN generator (paper Sec. 4.2, Fig. 3; official `nets/xmc_net.py`).

z -> 4x4 stem -> GenBlocks conditioned on g = [W e_s, z] up to 16x16 -> word attention over the
16x16 regions -> m = [context, g] conditions the remaining GenSpatialBlocks through local
conditional BN -> CBN-ReLU-conv3x3-tanh, mapped to [0, 1]. No spectral norm in G (official).
GeneratorConfig.caption_paths adds readings of the caption that are not in the paper; G meets
them only through the `caption_paths` functions, each the identity when its path is off, as
every preset leaves them (models/caption_paths.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models import caption_paths
from models.artifacts import ArtifactMixin
from models.config import GeneratorConfig, get_preset
from models.layers import GenBlock, LocalConditionalBatchNorm, init_glorot, word_attention

__all__ = ["Generator", "GeneratorOutput", "word_attention"]


class GeneratorOutput(NamedTuple):
    """What `Generator(..., return_attention=True)` returns (a tuple, so it also unpacks)."""

    images: torch.Tensor  # (B, 3, R, R) in [0, 1]
    attention: torch.Tensor  # (B, T, 16, 16): each region's distribution over the words


class Generator(nn.Module, ArtifactMixin):
    config_class = GeneratorConfig
    artifact_kind = "generator"
    # the caption paths (models/caption_paths.py), None where off and always in the paper's G
    sentence_head: caption_paths.SentenceHead | None
    token_layer: caption_paths.TokenLayer | None
    word_coords: caption_paths.CoordinateQuery | None
    coarse_attention: caption_paths.CoarseAttention | None

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
        caption_paths.add_paths(self, channels)  # none in the paper's G
        init_glorot(self)
        caption_paths.reset_identity(self)

    @classmethod
    def from_preset(cls, name: str) -> Generator:
        return cls(get_preset(name).generator)

    def _check_inputs(
        self, z: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor
    ) -> None:
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
        self._check_inputs(z, sentence, words, word_mask)
        words, sentence = caption_paths.read_tokens(self, words, word_mask, sentence)
        projected = self.sentence_projection(sentence)  # (B, Z)
        x = self.stem(z).view(batch, -1, 4, 4)
        projected, x = caption_paths.start(self, sentence, projected, x)
        g = torch.cat([projected, z], dim=1)  # (B, 2Z)
        for i, block in enumerate(self.global_blocks):
            x = block(x, g)  # -> (B, C, 16, 16)
            x = caption_paths.after_global_block(self, i, x, words, word_mask)
        side = c.attention_resolution
        queries = self.word_projection(x)  # (B, D_w, 16, 16)
        queries = caption_paths.locate_queries(self, queries)
        regions = queries.flatten(2).transpose(1, 2)  # (B, 256, D_w)
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
